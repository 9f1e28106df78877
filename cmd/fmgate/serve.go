package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	moderationv1 "github.com/fmgate/fmgate/gen/fmgate/moderation/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	quotav1 "github.com/fmgate/fmgate/gen/fmgate/quota/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	"github.com/fmgate/fmgate/internal/audit"
	"github.com/fmgate/fmgate/internal/config"
	"github.com/fmgate/fmgate/internal/grpcserver"
	"github.com/fmgate/fmgate/internal/logging"
	"github.com/fmgate/fmgate/internal/pg"
	"github.com/fmgate/fmgate/internal/resources"
	"github.com/fmgate/fmgate/internal/seal"
	"github.com/fmgate/fmgate/internal/simulator"
	"github.com/fmgate/fmgate/internal/telemetry"
	"github.com/fmgate/fmgate/services/edge"
	"github.com/fmgate/fmgate/services/quota/quotaredis"
)

// Services, in start order. Each serves under its own contract; see docs/architecture.md.
var allServices = []string{"registry", "identity", "policy", "quota", "moderation", "dispatch", "edge"}

// healthNames are the grpc.health.v1 service names of each service.
var healthNames = map[string]string{
	"registry":   registryv1.RegistryService_ServiceDesc.ServiceName,
	"identity":   identityv1.IdentityService_ServiceDesc.ServiceName,
	"policy":     policyv1.PolicyService_ServiceDesc.ServiceName,
	"quota":      quotav1.QuotaService_ServiceDesc.ServiceName,
	"moderation": moderationv1.ModerationService_ServiceDesc.ServiceName,
	"dispatch":   dispatchv1.DispatchService_ServiceDesc.ServiceName,
	"edge":       gatewayv1.GatewayService_ServiceDesc.ServiceName,
}

// needs lists the services each service calls. Registry and policy call identity to
// authenticate the callers of their administrative RPCs (internal/adminauth).
var needs = map[string][]string{
	"edge":     {"identity", "registry", "policy", "quota", "moderation", "dispatch"},
	"dispatch": {"registry"},
	"registry": {"identity"},
	"policy":   {"identity"},
}

// DemoKeyEnv names the variable that fixes the embedded demo's API key.
const DemoKeyEnv = "FMGATE_DEMO_API_KEY"

type serveConfig struct {
	services      string
	grpcAddr      string
	httpAddr      string
	peers         map[string]*string
	postgresURL   string
	redisURL      string
	resources     string
	simulatorAddr string
	logLevel      string
	shutdownDelay time.Duration
	shutdownGrace time.Duration
	dispatch      dispatchConfig
	// meshToken authenticates the processes of one mesh to each other (grpcserver access).
	meshToken string
	// auditSpoolDir holds the edge's audit events the store did not take (audit.Recorder).
	auditSpoolDir string
	// credentialsMasterKey seals vendor credentials in dispatch's store (base64, 32 bytes).
	// It is a secret: never logged.
	credentialsMasterKey string
}

// dispatchConfig holds the vendor-call limits of the dispatch service.
type dispatchConfig struct {
	timeout           time.Duration
	firstTokenTimeout time.Duration
	streamIdleTimeout time.Duration
	connectTimeout    time.Duration
	maxAttempts       int
}

func (c *serveConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.services, "services", "all", "services to run: all, or a comma-separated list of "+strings.Join(allServices, ", "))
	fs.StringVar(&c.grpcAddr, "grpc.addr", ":9090", "gRPC listen address")
	fs.StringVar(&c.httpAddr, "http.addr", ":8080", "HTTP listen address (edge: REST, OpenAPI, /healthz, /readyz)")
	c.peers = map[string]*string{}
	for _, svc := range allServices {
		if svc == "edge" {
			continue
		}
		c.peers[svc] = fs.String(svc+".addr", "", "address (host:port) of the "+svc+" service when it runs in another process")
	}
	fs.StringVar(&c.postgresURL, "postgres.url", "", "Postgres URL for the registry, identity and policy stores and dispatch's credential store (default: in memory)")
	fs.StringVar(&c.redisURL, "redis.url", "", "Redis URL for quota counters (default: in process)")
	fs.StringVar(&c.resources, "resources", "", "resource file to seed at start (default: the built-in demo, served by the simulator)")
	fs.StringVar(&c.simulatorAddr, "simulator.addr", "127.0.0.1:0", "listen address of the demo's in-process provider simulator (demo only)")
	fs.StringVar(&c.logLevel, "log.level", "info", "log level: debug, info, warn or error")
	fs.DurationVar(&c.shutdownDelay, "shutdown.delay", 0, "time between failing /readyz and stopping, for load balancers to notice")
	fs.DurationVar(&c.shutdownGrace, "shutdown.grace", 15*time.Second, "time in-flight requests get to finish at shutdown")
	fs.StringVar(&c.meshToken, "mesh.token", "", "secret the processes of one mesh present to each other; without it internal services answer only in-process callers (set the same value on every process of a mesh)")
	fs.DurationVar(&c.dispatch.timeout, "dispatch.timeout", 60*time.Second, "longest a non-streamed vendor call may take")
	fs.DurationVar(&c.dispatch.firstTokenTimeout, "dispatch.first-token-timeout", 30*time.Second, "longest wait for a stream's first chunk")
	fs.DurationVar(&c.dispatch.streamIdleTimeout, "dispatch.stream-idle-timeout", 60*time.Second, "longest wait between a stream's chunks")
	fs.DurationVar(&c.dispatch.connectTimeout, "dispatch.connect-timeout", 5*time.Second, "longest wait to connect to a vendor")
	fs.IntVar(&c.dispatch.maxAttempts, "dispatch.max-attempts-per-endpoint", 2, "attempts on one endpoint (retries on transient failures) before falling back to the next")
	fs.StringVar(&c.auditSpoolDir, "audit.spool-dir", filepath.Join(os.TempDir(), "fmgate-audit-spool"),
		"directory where the edge spools audit events while the audit store (Postgres with --postgres.url, else memory) is unavailable; replayed in order at the next chance, including the next start; one directory per process")
	fs.StringVar(&c.credentialsMasterKey, "credentials.master-key", "", "base64 AES-256 key sealing the vendor credentials dispatch stores (store:NAME references, the resources' credentials); a secret: prefer the environment variable")
}

// local returns the services this process runs, in start order.
func (c *serveConfig) local() ([]string, error) {
	if c.services == "all" || c.services == "" {
		return allServices, nil
	}
	var out []string
	var errs []error
	for _, s := range strings.Split(c.services, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(allServices, s) {
			errs = append(errs, fmt.Errorf("--services: unknown service %q (want %s)", s, strings.Join(allServices, ", ")))
			continue
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b string) int { return slices.Index(allServices, a) - slices.Index(allServices, b) })
	return slices.Compact(out), errors.Join(errs...)
}

// validate reports every configuration problem at once.
func (c *serveConfig) validate() ([]string, error) {
	local, err := c.local()
	errs := []error{err}
	for _, svc := range local {
		for _, dep := range needs[svc] {
			if !slices.Contains(local, dep) && *c.peers[dep] == "" {
				errs = append(errs, fmt.Errorf("--%s.addr is required: %s calls %s, which this process does not run", dep, svc, dep))
			}
		}
	}
	if c.shutdownGrace < 0 || c.shutdownDelay < 0 {
		errs = append(errs, errors.New("--shutdown.grace and --shutdown.delay must not be negative"))
	}
	if len(local) < len(allServices) && len(c.meshToken) < 32 {
		errs = append(errs, errors.New("--mesh.token (FMGATE_MESH_TOKEN) of at least 32 characters is required when services run in separate processes: peers refuse internal calls without it"))
	}
	d := c.dispatch
	if d.timeout <= 0 || d.firstTokenTimeout <= 0 || d.streamIdleTimeout <= 0 || d.connectTimeout <= 0 {
		errs = append(errs, errors.New("--dispatch.*-timeout flags must be positive"))
	}
	if d.maxAttempts < 1 {
		errs = append(errs, errors.New("--dispatch.max-attempts-per-endpoint must be at least 1"))
	}
	if c.credentialsMasterKey != "" {
		if _, err := seal.ParseKey(c.credentialsMasterKey); err != nil {
			errs = append(errs, fmt.Errorf("--credentials.master-key: %w", err))
		}
	}
	return local, errors.Join(errs...)
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fmgate serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg serveConfig
	cfg.register(fs)
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	local, err := cfg.validate()
	if err != nil {
		return err
	}
	log, err := logging.New(stderr, cfg.logLevel)
	if err != nil {
		return err
	}
	// Libraries that write to the standard log package (some vendor SDKs do) go through the
	// same JSON handler, so every line has a level and a trace id where there is one.
	previous := slog.Default()
	slog.SetDefault(log)
	defer slog.SetDefault(previous)
	log.Info("starting fmgate", "version", version, "services", strings.Join(local, ","),
		"grpc_addr", cfg.grpcAddr, "http_addr", cfg.httpAddr,
		"postgres_url", config.Redact(cfg.postgresURL), "redis_url", config.Redact(cfg.redisURL), "resources", cfg.resources,
		"credentials_master_key", redactSecret(cfg.credentialsMasterKey))

	global := local[0]
	if slices.Contains(local, "edge") {
		global = "edge"
	}
	tracing, shutdownTracing, err := telemetry.Setup(ctx, telemetry.Config{Services: local, Global: global, Version: version})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := shutdownTracing(sctx); err != nil {
			log.Warn("flush traces", "error", err)
		}
	}()

	p := &process{cfg: cfg, local: local, log: log, tracing: tracing, stdout: stdout}
	defer p.close()
	if err := p.start(ctx); err != nil {
		return err
	}
	return p.run(ctx)
}

// process is one running fmgate process: its services, listeners and connections.
type process struct {
	cfg     serveConfig
	local   []string
	log     *slog.Logger
	tracing *telemetry.Providers
	stdout  io.Writer

	srv        *grpcserver.Server
	pool       *pgxpool.Pool
	redis      *redis.Client
	conns      []*grpc.ClientConn
	peerConns  map[peer]*grpc.ClientConn // one per caller and peer service, each checked by ready
	sim        *http.Server
	edge       *edge.Server
	audit      auditRecorders // one per service: the edge's generations, the admin layer's changes
	auditStore audit.Store
	http       *http.Server
	grpcLis    net.Listener
	httpLis    net.Listener
	closers    []func()
}

func (p *process) runs(svc string) bool { return slices.Contains(p.local, svc) }

// start builds everything in order: resources, pools, stores, services, listeners.
func (p *process) start(ctx context.Context) error {
	res, lookup, err := p.loadResources(ctx)
	if err != nil {
		return err
	}
	if err := p.checkCredentials(res); err != nil {
		return err
	}
	// Every process connects when configured: each appends its audit events to Postgres.
	if p.cfg.postgresURL != "" {
		if p.pool, err = pg.Connect(ctx, p.cfg.postgresURL); err != nil {
			return err
		}
	}
	if p.cfg.redisURL != "" && p.runs("quota") {
		if p.redis, err = quotaredis.Connect(ctx, p.cfg.redisURL); err != nil {
			return err
		}
	}
	p.srv = grpcserver.New(p.log, p.tracing, p.cfg.meshToken)
	p.peerConns = map[peer]*grpc.ClientConn{}
	if err := p.startAudit(); err != nil {
		return err
	}
	if err := p.startAdmin(); err != nil {
		return err
	}
	for _, svc := range p.local {
		if err := p.startService(ctx, svc, res, lookup); err != nil {
			return fmt.Errorf("start %s: %w", svc, err)
		}
	}
	if p.grpcLis, err = net.Listen("tcp", p.cfg.grpcAddr); err != nil {
		return fmt.Errorf("listen grpc: %w", err)
	}
	if p.runs("edge") {
		if p.httpLis, err = net.Listen("tcp", p.cfg.httpAddr); err != nil {
			return fmt.Errorf("listen http: %w", err)
		}
		admin, err := p.adminClients()
		if err != nil {
			return err
		}
		handler, err := edge.NewHTTPHandler(ctx, edge.HTTPConfig{
			Gateway:        gatewayv1.NewGatewayServiceClient(p.srv.Channel("edge")),
			Ready:          p.ready,
			TracerProvider: p.tracing.For("edge"),
			Admin:          admin,
		})
		if err != nil {
			return err
		}
		p.http = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	}
	return nil
}

// peer names a connection to another process: who calls (its client spans' service) and
// which service it reaches.
type peer struct{ caller, svc string }

// client returns a connection for calls from caller to svc: in process when this process
// runs svc, over the network otherwise. Network connections are shared by every use of one
// caller and service, so that the connection readiness checks is the one requests take.
func (p *process) client(caller, svc string) (grpc.ClientConnInterface, error) {
	if p.runs(svc) {
		return p.srv.Channel(caller), nil
	}
	if conn, ok := p.peerConns[peer{caller, svc}]; ok {
		return conn, nil
	}
	conn, err := grpcserver.Dial(*p.cfg.peers[svc], caller, p.tracing, p.cfg.meshToken)
	if err != nil {
		return nil, err
	}
	p.conns = append(p.conns, conn)
	p.peerConns[peer{caller, svc}] = conn
	return conn, nil
}

// run serves until ctx ends, then shuts down gracefully.
func (p *process) run(ctx context.Context) error {
	// The audit recorders write for the process's whole life and are flushed only after the
	// gRPC server stopped, so that the last requests' events are written too.
	actx, cancelAudit := context.WithCancel(context.WithoutCancel(ctx))
	var auditDone sync.WaitGroup
	for svc, rec := range p.audit {
		auditDone.Go(func() {
			if err := rec.Run(actx); err != nil {
				p.log.Error("audit events lost at shutdown", "service", svc, "error", err, "lost", rec.Stats().Lost)
			}
		})
	}
	var stopOnce sync.Once
	stopAudit := func() {
		stopOnce.Do(func() {
			cancelAudit()
			auditDone.Wait()
		})
	}
	defer func() { stopAudit() }() // a no-op once the shutdown below flushed it
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.srv.GRPC().Serve(p.grpcLis) })
	if p.http != nil {
		g.Go(func() error {
			if err := p.http.Serve(p.httpLis); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	// The edge follows identity's revocations for the process's life.
	wctx, stopWatch := context.WithCancel(ctx)
	var watching sync.WaitGroup
	if p.edge != nil {
		watching.Go(func() { p.edge.WatchRevocations(wctx) })
	}
	defer func() { stopWatch(); watching.Wait() }()
	p.srv.SetServing(true)
	attrs := []any{"grpc_addr", p.grpcLis.Addr().String(), "services", strings.Join(p.local, ",")}
	if p.httpLis != nil {
		attrs = append(attrs, "http_addr", p.httpLis.Addr().String())
	}
	p.log.Info("fmgate serving", attrs...)

	<-gctx.Done()
	p.log.Info("shutting down")
	stopWatch()
	watching.Wait()
	p.srv.SetServing(false)
	if p.cfg.shutdownDelay > 0 {
		time.Sleep(p.cfg.shutdownDelay) // let load balancers see /readyz fail
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.shutdownGrace)
	defer cancel()
	if p.http != nil {
		if err := p.http.Shutdown(sctx); err != nil {
			p.log.Warn("http shutdown", "error", err)
		}
	}
	stopped := make(chan struct{})
	go func() { p.srv.GRPC().GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-sctx.Done():
		p.srv.GRPC().Stop()
	}
	if p.edge != nil {
		if err := p.edge.Close(sctx); err != nil {
			p.log.Error("usage records still pending at shutdown", "error", err)
		}
	}
	stopAudit()
	if err := g.Wait(); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	p.log.Info("stopped")
	return nil
}

// ready is /readyz: this process serves, and every peer it calls answers its health check.
func (p *process) ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := p.srv.Health().Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return errors.New("shutting down or starting")
	}
	for pc, conn := range p.peerConns {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: healthNames[pc.svc]})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("peer %s is not serving", pc.svc)
		}
	}
	return nil
}

// close releases what start acquired, in reverse order.
func (p *process) close() {
	for _, c := range p.conns {
		_ = c.Close()
	}
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
	if p.sim != nil {
		_ = p.sim.Close()
	}
	if p.redis != nil {
		_ = p.redis.Close()
	}
	if p.pool != nil {
		p.pool.Close()
	}
}

// loadResources reads --resources, or builds the embedded demo: a provider simulator on
// loopback and a demo organisation whose API key comes from FMGATE_DEMO_API_KEY or is
// generated and printed once.
func (p *process) loadResources(ctx context.Context) (*resources.File, func(string) (string, bool), error) {
	if p.cfg.resources != "" {
		f, err := resources.Load(p.cfg.resources)
		return f, lookupEnv, err
	}
	simURL := ""
	if p.runs("registry") {
		lis, err := net.Listen("tcp", p.cfg.simulatorAddr)
		if err != nil {
			return nil, nil, fmt.Errorf("listen simulator: %w", err)
		}
		p.sim = &http.Server{Handler: simulator.New(simulator.Config{}), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = p.sim.Serve(lis) }()
		simURL = "http://" + lis.Addr().String() + "/v1"
	}
	key, generated, err := demoKey()
	if err != nil {
		return nil, nil, err
	}
	if p.runs("identity") && generated {
		fmt.Fprintf(p.stdout, "\nDemo API key (shown once; set %s to choose your own):\n\n  %s\n\n", DemoKeyEnv, key)
	}
	lookup := func(name string) (string, bool) {
		if name == DemoKeyEnv {
			return key, true
		}
		return lookupEnv(name)
	}
	return resources.Demo(simURL, DemoKeyEnv), lookup, nil
}

// redactSecret stands for a secret in the effective configuration: whether it is set, never
// what it is.
func redactSecret(s string) string {
	if s == "" {
		return ""
	}
	return "[REDACTED]"
}
