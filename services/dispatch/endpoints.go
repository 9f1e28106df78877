package dispatch

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
)

// vendor calls one endpoint in its vendor's wire protocol. One is built per endpoint (with its
// URL and credential) and reused until the endpoint's cache entry expires. Implementations are
// safe for concurrent use. Errors are *attemptError, except context errors and errors returned
// by onDelta, which are passed through.
type vendor interface {
	generate(ctx context.Context, req *vendorRequest) (*vendorResult, error)
	// stream calls onDelta for each piece of the answer (text, tool-call pieces), in order,
	// and returns the end of the answer.
	stream(ctx context.Context, req *vendorRequest, onDelta func(delta) error) (*vendorResult, error)
	// embed returns one vector per input, in input order. Vendors without embeddings return
	// an *attemptError of kind failUnsupported.
	embed(ctx context.Context, req *embedRequest) (*embedResult, error)
}

type vendorRequest struct {
	messages []*typev1.Message
	params   *typev1.GenerationParams
}

// delta is one piece of a streamed answer.
type delta struct {
	model     string
	text      string
	toolCalls []*typev1.ToolCallDelta
}

type embedRequest struct {
	inputs     []string
	dimensions int32 // 0: the model's default
	endUserID  string
}

type embedResult struct {
	embeddings []*typev1.Embedding
	usage      *typev1.Usage
	model      string
}

type vendorResult struct {
	message *typev1.Message // nil for streams
	finish  typev1.FinishReason
	usage   *typev1.Usage
	model   string
}

// endpoint is a registry endpoint ready to call.
type endpoint struct {
	id            string
	providerName  string // gen_ai.provider.name
	upstreamModel string
	serverAddress string
	serverPort    int
	// weight is the endpoint's share of its priority group's traffic (at least 1); priority
	// orders the groups, as the registry's route does.
	weight   int64
	priority int32
	vendor   vendor
}

type endpointKey struct{ org, id string }

type cacheEntry struct {
	ep      *endpoint
	expires time.Time
}

// endpointCache holds resolved endpoints, with their vendor clients, for a short TTL so that a
// registry change (new URL, rotated credential) is seen within the TTL. It is bounded and safe
// for concurrent use; concurrent misses for one key share one registry call.
type endpointCache struct {
	registry registryv1.RegistryServiceClient
	creds    CredentialResolver
	client   *http.Client
	// build makes an endpoint's vendor adapter: newVendor, or a fake in tests.
	build func(vendorConfig) (vendor, string, error)
	ttl   time.Duration
	max   int

	mu      sync.RWMutex
	entries map[endpointKey]cacheEntry
	group   singleflight.Group
}

// maxCachedEndpoints bounds the cache; a gateway has far fewer endpoints.
const maxCachedEndpoints = 10_000

// registryLookupTimeout bounds one shared registry lookup.
const registryLookupTimeout = 10 * time.Second

func (c *endpointCache) get(ctx context.Context, org, id string) (*endpoint, error) {
	key := endpointKey{org, id}
	now := time.Now()
	c.mu.RLock()
	e, ok := c.entries[key]
	c.mu.RUnlock()
	if ok && now.Before(e.expires) {
		return e.ep, nil
	}
	// One lookup serves every concurrent caller, so it must not die with the first caller's
	// context; each caller still stops waiting when its own context ends.
	ch := c.group.DoChan(org+"\x00"+id, func() (any, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), registryLookupTimeout)
		defer cancel()
		ep, err := c.resolve(lctx, org, id)
		if err != nil {
			return nil, err
		}
		c.put(key, ep)
		return ep, nil
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*endpoint), nil
	}
}

func (c *endpointCache) put(key endpointKey, ep *endpoint) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[key] = cacheEntry{ep: ep, expires: now.Add(c.ttl)}
}

// resolve reads the endpoint from the registry and builds its vendor client. The URL and the
// credential come from the registry only.
func (c *endpointCache) resolve(ctx context.Context, org, id string) (*endpoint, error) {
	res, err := c.registry.GetEndpoint(ctx, &registryv1.GetEndpointRequest{OrganizationId: org, Id: id})
	if err != nil {
		if status.Code(err) == codes.NotFound {
			return nil, &attemptError{kind: failNotFound, endpointID: id, detail: "registry has no such endpoint"}
		}
		return nil, &attemptError{kind: failRegistry, endpointID: id, detail: "get endpoint: " + status.Code(err).String()}
	}
	reg := res.GetEndpoint()
	if reg == nil {
		return nil, &attemptError{kind: failNotFound, endpointID: id, detail: "registry returned no endpoint"}
	}
	misconfigured := func(detail string) error {
		return &attemptError{kind: failMisconfigured, endpointID: id, detail: detail}
	}
	u, err := url.Parse(reg.GetBaseUrl())
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, misconfigured("base_url is not an http(s) URL")
	}
	cred, err := c.creds.Resolve(ctx, org, reg.GetCredentialRef())
	if err != nil {
		return nil, misconfigured(err.Error())
	}
	ep := &endpoint{
		id: id, upstreamModel: reg.GetUpstreamModel(), serverAddress: u.Hostname(),
		weight: max(int64(reg.GetWeight()), 1), priority: reg.GetPriority(),
	}
	if p := u.Port(); p != "" {
		ep.serverPort, _ = strconv.Atoi(p)
	} else if u.Scheme == "https" {
		ep.serverPort = 443
	} else {
		ep.serverPort = 80
	}
	vendor, provider, err := c.build(vendorConfig{
		endpointID: id, provider: reg.GetProvider(), baseURL: u, upstreamModel: reg.GetUpstreamModel(),
		apiVersion: reg.GetApiVersion(), region: reg.GetRegion(), cred: cred, client: c.client,
	})
	if err != nil {
		return nil, misconfigured(err.Error())
	}
	ep.vendor, ep.providerName = vendor, provider
	return ep, nil
}

// isNetTimeout reports whether err is a network timeout.
func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
