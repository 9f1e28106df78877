package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/fmgate/fmgate/internal/resources"
)

// services are the fmgate services, as cmd/fmgate names them.
var services = []string{"registry", "identity", "policy", "quota", "moderation", "dispatch", "edge"}

// peers lists the services each service calls (cmd/fmgate's needs).
var peers = map[string][]string{
	"edge":     {"identity", "registry", "policy", "quota", "moderation", "dispatch"},
	"dispatch": {"registry"},
	"registry": {"identity"},
	"policy":   {"identity"},
}

var (
	pgBacked    = []string{"registry", "identity", "policy", "edge"}
	usesRes     = []string{"registry", "identity", "policy", "quota"}
	supporting  = []string{"postgres", "redis", "jaeger", "simulator", "migrate"}
	repoRoot    = ".."
	resourceEnv = "/etc/fmgate/resources.yaml"
)

// assertKey checks that m has key without printing all of m on failure.
func assertKey[V any](t *testing.T, m map[string]V, key string, msg string, args ...any) bool {
	t.Helper()
	_, ok := m[key]
	return assert.True(t, ok, "missing "+fmt.Sprintf(msg, args...))
}

func peerEnv(svc string) string { return "FMGATE_" + strings.ToUpper(svc) + "_ADDR" }

// --- docker-compose.yaml ---

type composeService struct {
	Image       string         `yaml:"image"`
	Build       map[string]any `yaml:"build"`
	Command     []string       `yaml:"command"`
	Environment any            `yaml:"environment"`
	Volumes     []any          `yaml:"volumes"`
	Ports       []any          `yaml:"ports"`
	DependsOn   any            `yaml:"depends_on"`
	Restart     string         `yaml:"restart"`
	Healthcheck map[string]any `yaml:"healthcheck"`
}

func (s composeService) env(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	switch e := s.Environment.(type) {
	case nil:
	case map[string]any:
		for k, v := range e {
			out[k] = fmt.Sprint(v)
		}
	case []any:
		for _, kv := range e {
			k, v, _ := strings.Cut(fmt.Sprint(kv), "=")
			out[k] = v
		}
	default:
		t.Fatalf("environment: unexpected %T", e)
	}
	return out
}

// dependsOn returns each dependency's condition ("service_started" for the short form).
func (s composeService) dependsOn(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	switch d := s.DependsOn.(type) {
	case nil:
	case []any:
		for _, name := range d {
			out[fmt.Sprint(name)] = "service_started"
		}
	case map[string]any:
		for name, v := range d {
			cond := "service_started"
			if m, ok := v.(map[string]any); ok && m["condition"] != nil {
				cond = fmt.Sprint(m["condition"])
			}
			out[name] = cond
		}
	default:
		t.Fatalf("depends_on: unexpected %T", d)
	}
	return out
}

// binds returns target → source of the service's bind mounts.
func (s composeService) binds(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, v := range s.Volumes {
		switch m := v.(type) {
		case string:
			parts := strings.Split(m, ":")
			require.GreaterOrEqual(t, len(parts), 2, "volume %q", m)
			out[parts[1]] = parts[0]
		case map[string]any:
			out[fmt.Sprint(m["target"])] = fmt.Sprint(m["source"])
		}
	}
	return out
}

func loadCompose(t *testing.T) map[string]composeService {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yaml"))
	require.NoError(t, err)
	var doc struct {
		Services map[string]composeService `yaml:"services"`
	}
	require.NoError(t, yaml.Unmarshal(data, &doc))
	require.NotEmpty(t, doc.Services)
	return doc.Services
}

func TestComposeServices(t *testing.T) {
	cs := loadCompose(t)
	for _, name := range supporting {
		assertKey(t, cs, name, "supporting service %s", name)
	}
	assert.Equal(t, "no", cs["migrate"].Restart, "migrate runs once")
	assert.Equal(t, []string{"migrate"}, cs["migrate"].Command)
	assert.Equal(t, "service_healthy", cs["migrate"].dependsOn(t)["postgres"])
	assert.NotEmpty(t, cs["migrate"].env(t)["FMGATE_POSTGRES_URL"])
	assert.Equal(t, "simulate", cs["simulator"].Command[0])
	assert.NotEmpty(t, cs["postgres"].Healthcheck, "postgres healthcheck")
	assert.NotEmpty(t, cs["redis"].Healthcheck, "redis healthcheck")

	fmgateImage := cs["edge"].Image
	for _, name := range append(slices.Clone(services), "migrate", "simulator") {
		t.Run(name, func(t *testing.T) {
			svc, ok := cs[name]
			require.True(t, ok, "compose service %s missing", name)
			assert.Equal(t, ".", svc.Build["context"], "built from the repository root")
			assert.Equal(t, "deploy/Dockerfile", svc.Build["dockerfile"])
			assert.Equal(t, fmgateImage, svc.Image, "one image for every fmgate container")
			env := svc.env(t)
			assert.Equal(t, "http://jaeger:4317", env["OTEL_EXPORTER_OTLP_ENDPOINT"])
			for dep := range svc.dependsOn(t) {
				assertKey(t, cs, dep, "depends_on names compose service %s", dep)
			}
			if name != "edge" {
				assert.Empty(t, svc.Ports, "only the edge publishes ports")
			}
		})
	}
	for _, name := range services {
		t.Run(name, func(t *testing.T) {
			svc := cs[name]
			assert.Equal(t, []string{"serve", "--services=" + name}, svc.Command)
			env := svc.env(t)
			deps := svc.dependsOn(t)
			for _, peer := range peers[name] {
				addr := env[peerEnv(peer)]
				host, port, ok := strings.Cut(addr, ":")
				if assert.True(t, ok, "%s=%q", peerEnv(peer), addr) {
					assert.Equal(t, peer, host, "%s names the %s service", peerEnv(peer), peer)
					assertKey(t, cs, host, "compose service %s", host)
					assert.Equal(t, "9090", port)
				}
				assert.Contains(t, deps, peer, "%s starts after %s", name, peer)
			}
			// No stray peer addresses for services this one does not call.
			for k := range env {
				if strings.HasSuffix(k, "_ADDR") && strings.HasPrefix(k, "FMGATE_") {
					callee := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(k, "FMGATE_"), "_ADDR"))
					assert.Contains(t, peers[name], callee, "%s sets %s", name, k)
				}
			}
			if slices.Contains(pgBacked, name) {
				assert.Contains(t, env["FMGATE_POSTGRES_URL"], "@postgres:5432/")
				assert.Equal(t, "service_completed_successfully", deps["migrate"])
			} else {
				assert.NotContains(t, env, "FMGATE_POSTGRES_URL")
			}
			assert.Contains(t, env["FMGATE_MESH_TOKEN"], "${FMGATE_MESH_TOKEN:?", "every process of the mesh shares the token, and compose refuses to start without one")
			if name == "quota" {
				assert.Contains(t, env["FMGATE_REDIS_URL"], "redis:6379")
				assert.Equal(t, "service_healthy", deps["redis"])
			}
			if name == "identity" {
				assert.Contains(t, env["FMGATE_DEMO_API_KEY"], "${FMGATE_DEMO_API_KEY:?", "compose refuses to start without a key")
			}
			if slices.Contains(usesRes, name) {
				assert.Equal(t, resourceEnv, env["FMGATE_RESOURCES"])
				src, ok := svc.binds(t)[resourceEnv]
				require.True(t, ok, "%s mounts %s", name, resourceEnv)
				f, err := resources.Load(filepath.Join(repoRoot, src))
				require.NoError(t, err)
				assert.NotEmpty(t, f.Models)
			}
		})
	}
	assert.NotEmpty(t, cs["edge"].Ports, "the edge publishes its ports")
}

func TestResourcesFile(t *testing.T) {
	f, err := resources.Load("resources.yaml")
	require.NoError(t, err)
	require.Len(t, f.Endpoints, 1)
	assert.Equal(t, "openai_compatible", f.Endpoints[0].Provider)
	assert.Equal(t, "http://simulator:8091/v1", f.Endpoints[0].BaseURL)
	require.Len(t, f.APIKeys, 1)
	assert.Equal(t, "FMGATE_DEMO_API_KEY", f.APIKeys[0].SecretEnv)
	require.Len(t, f.Policies, 1)
	assert.Equal(t, "allow", f.Policies[0].Effect)
	assert.Equal(t, "default", f.Policies[0].ModerationProfile)
	require.NotEmpty(t, f.Limits)
	for _, m := range f.Models {
		for _, ep := range m.Endpoints {
			assert.True(t, slices.ContainsFunc(f.Endpoints, func(e resources.Endpoint) bool {
				return e.Organization == m.Organization && e.ID == ep
			}), "model %s names unknown endpoint %s", m.Name, ep)
		}
	}

	k8s, err := os.ReadFile(filepath.Join("k8s", "resources.yaml"))
	require.NoError(t, err)
	root, err := os.ReadFile("resources.yaml")
	require.NoError(t, err)
	assert.Equal(t, string(root), string(k8s), "deploy/k8s/resources.yaml must be a copy of deploy/resources.yaml")
}

// --- deploy/Dockerfile ---

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	require.NoError(t, err)
	var froms []string
	var user string
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			froms = append(froms, fields[1])
		case "USER":
			user = fields[1]
		}
	}
	require.GreaterOrEqual(t, len(froms), 2, "multi-stage build")
	assert.True(t, strings.HasPrefix(froms[0], "golang:"), "build stage is golang: %s", froms[0])
	runtime := froms[len(froms)-1]
	assert.True(t, strings.HasPrefix(runtime, "gcr.io/distroless/static"), "runtime stage is distroless static: %s", runtime)
	assert.True(t, strings.HasSuffix(runtime, ":nonroot") || (user != "" && !strings.HasPrefix(user, "0") && user != "root"),
		"runtime runs as non-root")
	assert.Regexp(t, `^(65532|nonroot)`, user, "USER is the distroless nonroot user")
	assert.Contains(t, string(data), "CGO_ENABLED=0")
	assert.Contains(t, string(data), "./cmd/fmgate")
	assert.Contains(t, string(data), "-X main.version=")
	assert.Contains(t, string(data), `ENTRYPOINT ["/fmgate"]`)
	assert.Regexp(t, `(?m)^EXPOSE .*\b8080\b`, string(data))
	assert.Regexp(t, `(?m)^EXPOSE .*\b9090\b`, string(data))

	// The build runs in workspace mode: the workspace's modules must be in the context.
	work, err := os.ReadFile(filepath.Join(repoRoot, "go.work"))
	require.NoError(t, err)
	for _, m := range regexp.MustCompile(`(?m)^\s*(\./\S*|\.)\s*$`).FindAllStringSubmatch(string(work), -1) {
		_, err := os.Stat(filepath.Join(repoRoot, m[1], "go.mod"))
		assert.NoError(t, err, "workspace module %s", m[1])
	}
}

// --- deploy/k8s ---

type object struct {
	path string
	doc  map[string]any
}

func (o object) kind() string { return str(o.doc, "kind") }
func (o object) name() string { return str(o.doc, "metadata", "name") }

// get walks maps and lists ("0" indexes a list) and returns nil when a step is missing.
func get(v any, path ...string) any {
	for _, p := range path {
		switch c := v.(type) {
		case map[string]any:
			v = c[p]
		case []any:
			var i int
			if _, err := fmt.Sscan(p, &i); err != nil || i >= len(c) {
				return nil
			}
			v = c[i]
		default:
			return nil
		}
	}
	return v
}

func str(v any, path ...string) string {
	s, _ := get(v, path...).(string)
	return s
}

func list(v any, path ...string) []any {
	l, _ := get(v, path...).([]any)
	return l
}

func loadK8s(t *testing.T) []object {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("k8s", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	var objs []object
	for _, p := range paths {
		data, err := os.ReadFile(p)
		require.NoError(t, err)
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var doc map[string]any
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err, p)
			if doc == nil || filepath.Base(p) == "kustomization.yaml" || filepath.Base(p) == "resources.yaml" {
				continue
			}
			require.NotEmpty(t, str(doc, "apiVersion"), "%s: apiVersion", p)
			require.NotEmpty(t, str(doc, "kind"), "%s: kind", p)
			require.NotEmpty(t, str(doc, "metadata", "name"), "%s: metadata.name", p)
			objs = append(objs, object{path: p, doc: doc})
		}
	}
	return objs
}

func loadKustomization(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("k8s", "kustomization.yaml"))
	require.NoError(t, err)
	var k map[string]any
	require.NoError(t, yaml.Unmarshal(data, &k))
	return k
}

func TestKustomization(t *testing.T) {
	k := loadKustomization(t)
	listed := map[string]bool{}
	for _, r := range list(k, "resources") {
		path := filepath.Join("k8s", fmt.Sprint(r))
		_, err := os.Stat(path)
		assert.NoError(t, err, "kustomization resource %s", r)
		listed[filepath.Clean(path)] = true
	}
	for _, g := range list(k, "configMapGenerator") {
		for _, f := range list(g, "files") {
			_, src, ok := strings.Cut(fmt.Sprint(f), "=")
			if !ok {
				src = fmt.Sprint(f)
			}
			_, err := os.Stat(filepath.Join("k8s", src))
			assert.NoError(t, err, "configMapGenerator file %s", src)
		}
	}
	// Every manifest in the directory is part of the base.
	for _, o := range loadK8s(t) {
		assert.True(t, listed[filepath.Clean(o.path)], "%s is not listed in kustomization.yaml", o.path)
	}
}

func TestK8sManifests(t *testing.T) {
	objs := loadK8s(t)
	byKind := map[string]map[string]object{}
	for _, o := range objs {
		if byKind[o.kind()] == nil {
			byKind[o.kind()] = map[string]object{}
		}
		_, dup := byKind[o.kind()][o.name()]
		assert.False(t, dup, "%s %s defined twice", o.kind(), o.name())
		byKind[o.kind()][o.name()] = o
	}
	k := loadKustomization(t)
	configMaps := map[string]bool{}
	for _, g := range list(k, "configMapGenerator") {
		configMaps[str(g, "name")] = true
	}
	for name := range byKind["ConfigMap"] {
		configMaps[name] = true
	}

	// servicePorts returns the ports a Service exposes, by number.
	servicePorts := func(name string) []int {
		var out []int
		for _, p := range list(byKind["Service"][name].doc, "spec", "ports") {
			if n, ok := get(p, "port").(int); ok {
				out = append(out, n)
			}
		}
		return out
	}

	for _, svc := range services {
		for _, kind := range []string{"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} {
			assertKey(t, byKind[kind], svc, "%s %s", kind, svc)
		}
		assert.Contains(t, servicePorts(svc), 9090, "Service %s exposes gRPC", svc)
		hpa := byKind["HorizontalPodAutoscaler"][svc].doc
		assert.Equal(t, "autoscaling/v2", str(hpa, "apiVersion"))
		assert.Equal(t, svc, str(hpa, "spec", "scaleTargetRef", "name"))
		assert.Equal(t, "cpu", str(hpa, "spec", "metrics", "0", "resource", "name"))
		assert.Equal(t, 1, get(byKind["PodDisruptionBudget"][svc].doc, "spec", "minAvailable"))
	}
	assert.Contains(t, servicePorts("edge"), 8080, "Service edge exposes HTTP")
	assertKey(t, byKind["Job"], "migrate", "Job migrate")
	assert.Equal(t, "migrate", str(byKind["Job"]["migrate"].doc, "spec", "template", "spec", "containers", "0", "args", "0"))
	assertKey(t, byKind, "Namespace", "a Namespace")
	assertKey(t, byKind["Secret"], "fmgate-secrets", "Secret fmgate-secrets")

	for _, o := range objs {
		var pod any
		switch o.kind() {
		case "Deployment", "Job":
			pod = get(o.doc, "spec", "template", "spec")
		default:
			continue
		}
		t.Run(o.kind()+"/"+o.name(), func(t *testing.T) {
			checkPod(t, o, pod, byKind, configMaps, servicePorts)
		})
	}
}

func checkPod(t *testing.T, o object, pod any, byKind map[string]map[string]object, configMaps map[string]bool, servicePorts func(string) []int) {
	containers := list(pod, "containers")
	require.Len(t, containers, 1)
	c := containers[0]
	args := list(c, "args")
	require.NotEmpty(t, args)
	assert.Equal(t, "fmgate", strings.SplitN(str(c, "image"), ":", 2)[0], "the fmgate image")

	// Pod security: non-root, read-only root filesystem, no capabilities.
	nonRoot := get(c, "securityContext", "runAsNonRoot") == true || get(pod, "securityContext", "runAsNonRoot") == true
	assert.True(t, nonRoot, "runAsNonRoot")
	assert.Equal(t, true, get(c, "securityContext", "readOnlyRootFilesystem"))
	assert.Equal(t, false, get(c, "securityContext", "allowPrivilegeEscalation"))
	assert.Equal(t, []any{"ALL"}, get(c, "securityContext", "capabilities", "drop"))
	assert.NotNil(t, get(c, "resources", "requests"), "resource requests")
	assert.NotNil(t, get(c, "resources", "limits"), "resource limits")

	env := map[string]any{}
	for _, e := range list(c, "env") {
		env[str(e, "name")] = e
		if ref := str(e, "valueFrom", "secretKeyRef", "name"); ref != "" {
			key := str(e, "valueFrom", "secretKeyRef", "key")
			sec, ok := byKind["Secret"][ref]
			if assert.True(t, ok, "Secret %s", ref) {
				assert.NotNil(t, get(sec.doc, "stringData", key), "Secret %s has key %s", ref, key)
			}
		}
		if ref := str(e, "valueFrom", "configMapKeyRef", "name"); ref != "" {
			assert.True(t, configMaps[ref], "ConfigMap %s", ref)
		}
	}
	volumes := map[string]any{}
	for _, v := range list(pod, "volumes") {
		volumes[str(v, "name")] = v
		if ref := str(v, "configMap", "name"); ref != "" {
			assert.True(t, configMaps[ref], "ConfigMap %s", ref)
		}
	}
	for _, m := range list(c, "volumeMounts") {
		assert.Contains(t, volumes, str(m, "name"), "volumeMount %s", str(m, "name"))
	}
	switch args[0] {
	case "migrate":
		assert.Equal(t, "Job", o.kind())
		assert.Contains(t, env, "FMGATE_POSTGRES_URL")
		return
	case "simulate":
		return
	case "serve":
	default:
		t.Fatalf("unexpected command %v", args)
	}
	require.Equal(t, "Deployment", o.kind())
	var svc string
	for _, a := range args[1:] {
		if v, ok := strings.CutPrefix(fmt.Sprint(a), "--services="); ok {
			svc = v
		}
	}
	require.Contains(t, services, svc, "args %v name one service", args)
	assert.Equal(t, svc, o.name(), "the Deployment is named after its service")
	assert.Contains(t, args, "--shutdown.delay=5s")
	assert.Contains(t, env, "OTEL_EXPORTER_OTLP_ENDPOINT")
	assert.Nil(t, get(o.doc, "spec", "replicas"), "the HPA owns replicas")
	assert.Equal(t, svc, str(o.doc, "spec", "selector", "matchLabels", "app.kubernetes.io/component"))

	// Probes: the process's grpc health on 9090; the edge is ready on /readyz.
	assert.Equal(t, 9090, get(c, "livenessProbe", "grpc", "port"), "liveness on gRPC 9090")
	assert.Equal(t, "", get(c, "livenessProbe", "grpc", "service"))
	if svc == "edge" {
		assert.Equal(t, "/readyz", get(c, "readinessProbe", "httpGet", "path"))
		assert.Equal(t, 8080, get(c, "readinessProbe", "httpGet", "port"))
	} else {
		assert.Equal(t, 9090, get(c, "readinessProbe", "grpc", "port"), "readiness on gRPC 9090")
		assert.Equal(t, "", get(c, "readinessProbe", "grpc", "service"))
	}

	for _, peer := range peers[svc] {
		addr := str(env[peerEnv(peer)], "value")
		host, port, ok := strings.Cut(addr, ":")
		if assert.True(t, ok, "%s=%q", peerEnv(peer), addr) {
			assertKey(t, byKind["Service"], host, "%s names Service %s", peerEnv(peer), host)
			assert.Equal(t, "9090", port)
			assert.Contains(t, servicePorts(host), 9090)
		}
	}
	assert.Equal(t, "mesh-token", str(env["FMGATE_MESH_TOKEN"], "valueFrom", "secretKeyRef", "key"),
		"%s authenticates to its peers with the mesh token from the Secret", svc)
	if slices.Contains(pgBacked, svc) {
		assert.Contains(t, env, "FMGATE_POSTGRES_URL")
	}
	if svc == "quota" {
		assert.Contains(t, env, "FMGATE_REDIS_URL")
	}
	if svc == "identity" {
		assert.Contains(t, env, "FMGATE_DEMO_API_KEY")
	}
	if slices.Contains(usesRes, svc) {
		assert.Equal(t, resourceEnv, str(env["FMGATE_RESOURCES"], "value"))
		var mounted bool
		for _, m := range list(c, "volumeMounts") {
			if str(m, "mountPath") == filepath.Dir(resourceEnv) {
				mounted = str(volumes[str(m, "name")], "configMap", "name") == "fmgate-resources"
			}
		}
		assert.True(t, mounted, "resources.yaml mounted from the fmgate-resources ConfigMap")
	}
}
