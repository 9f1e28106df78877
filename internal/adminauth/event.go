package adminauth

import (
	"encoding/json"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	"github.com/fmgate/fmgate/internal/audit"
)

var recordJSON = protojson.MarshalOptions{UseProtoNames: true}

// event builds the audit record of a call. The record's before and after are the
// response's message fields named before and after. A response without either is recorded
// whole as after, unless it holds a field marked [debug_redact = true], in which case nothing
// of it is: secrets never reach the audit trail.
func event(p *identityv1.Principal, r *rule, method, action string, resp, req proto.Message, extra map[string]any) (audit.Event, error) {
	actor, err := actorOf(p)
	if err != nil {
		return audit.Event{}, err
	}
	e := audit.Event{
		OrganizationID: p.GetOrganizationId(),
		Service:        r.service,
		Actor:          actor,
		Action:         action,
		Resource:       audit.Resource{Type: r.access.GetResourceType()},
	}
	if e.Resource.Type == "" {
		e.Resource.Type = r.service
	}
	var before, after protoreflect.Message
	if resp != nil {
		m := resp.ProtoReflect()
		before, after = field(m, "before"), field(m, "after")
		fields := m.Descriptor().Fields()
		if fields.ByName("before") == nil && fields.ByName("after") == nil && !holdsSecret(m.Descriptor()) {
			after = m
		}
	}
	if e.Before, err = toJSON(before); err != nil {
		return e, err
	}
	if e.After, err = toJSON(after); err != nil {
		return e, err
	}
	e.Resource.ID = idOf(after)
	if e.Resource.ID == "" {
		e.Resource.ID = idOf(before)
	}
	if e.Resource.ID == "" && req != nil {
		e.Resource.ID = idOf(req.ProtoReflect())
	}
	details := map[string]any{"method": method}
	if k := p.GetApiKeyId(); k != "" {
		details["api_key_id"] = k
	}
	if iss := p.GetIssuer(); iss != "" {
		details["issuer"] = iss
	}
	if t := p.GetTeamId(); t != "" {
		details["team_id"] = t
	}
	for k, v := range extra {
		details[k] = v
	}
	b, err := json.Marshal(details)
	if err != nil {
		return e, err
	}
	e.Details = b
	return e, nil
}

// field returns m's set message field name, or nil.
func field(m protoreflect.Message, name protoreflect.Name) protoreflect.Message {
	fd := m.Descriptor().Fields().ByName(name)
	if fd == nil || fd.Kind() != protoreflect.MessageKind || fd.IsList() || fd.IsMap() || !m.Has(fd) {
		return nil
	}
	return m.Get(fd).Message()
}

// holdsSecret reports whether a message has a field marked [debug_redact = true] (the
// contracts' mark of a secret, such as CreateApiKeyResponse.secret), at any depth.
func holdsSecret(md protoreflect.MessageDescriptor) bool {
	return redacted(md, map[protoreflect.FullName]bool{})
}

func redacted(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if seen[md.FullName()] {
		return false
	}
	seen[md.FullName()] = true
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDebugRedact() {
			return true
		}
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		if fd.Kind() == protoreflect.MessageKind && redacted(fd.Message(), seen) {
			return true
		}
	}
	return false
}

func toJSON(m protoreflect.Message) (json.RawMessage, error) {
	if m == nil {
		return nil, nil
	}
	return recordJSON.Marshal(m.Interface())
}

// idOf returns the identifier of a record: its id, name or api_key_id field.
func idOf(m protoreflect.Message) string {
	if m == nil {
		return ""
	}
	for _, n := range []protoreflect.Name{"id", "name", "api_key_id", "endpoint_id", "pack", "model"} {
		fd := m.Descriptor().Fields().ByName(n)
		if fd != nil && fd.Kind() == protoreflect.StringKind && !fd.IsList() {
			if v := m.Get(fd).String(); v != "" {
				return v
			}
		}
	}
	return ""
}
