package policy

import (
	"fmt"
	"sync"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/interpreter"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
)

// Condition limits.
const (
	// MaxConditionBytes bounds the source of a condition.
	MaxConditionBytes = 4096
	// ConditionCostLimit bounds the work of one evaluation of a condition that loops (a
	// comprehension: all, exists, map, filter...), in CEL cost units, roughly one per
	// operation and per element visited; an evaluation that would exceed it fails, closed.
	ConditionCostLimit = 10_000
)

// The CEL variables a condition may use.
const (
	varPrincipal = "principal" // fmgate.identity.v1.Principal
	varModel     = "model"     // fmgate.policy.v1.ModelFacts
	varRequest   = "request"   // fmgate.policy.v1.RequestFacts
	varEndpoints = "endpoints" // list(fmgate.policy.v1.EndpointFacts)
)

// conditionEnv is the one CEL environment conditions compile in: the standard library and
// macros (has, all, exists, exists_one, map, filter) and optional values (m.?key), over the
// four variables. CEL has no side effects, I/O or unbounded loops.
var conditionEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Types(&identityv1.Principal{}, &policyv1.ModelFacts{}, &policyv1.RequestFacts{}, &policyv1.EndpointFacts{}),
		cel.Variable(varPrincipal, cel.ObjectType("fmgate.identity.v1.Principal")),
		cel.Variable(varModel, cel.ObjectType("fmgate.policy.v1.ModelFacts")),
		cel.Variable(varRequest, cel.ObjectType("fmgate.policy.v1.RequestFacts")),
		cel.Variable(varEndpoints, cel.ListType(cel.ObjectType("fmgate.policy.v1.EndpointFacts"))),
		cel.OptionalTypes(),
	)
})

// compileCondition type-checks src and prepares it for evaluation. The error is CEL's,
// naming line and column.
func compileCondition(src string) (cel.Program, error) {
	env, err := conditionEnv()
	if err != nil {
		return nil, fmt.Errorf("condition environment: %w", err)
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("must be of type bool, not %s", ast.OutputType())
	}
	// Without a comprehension (all, exists, map, filter...) an evaluation does work linear
	// in the expression's bounded size and needs no metering, which would double its cost;
	// with one, the cost limit bounds it.
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	comprehensions := celast.MatchDescendants(celast.NavigateAST(ast.NativeRep()), celast.KindMatcher(celast.ComprehensionKind))
	if len(comprehensions) > 0 {
		opts = append(opts, cel.CostLimit(ConditionCostLimit))
	}
	return env.Program(ast, opts...)
}

// activation resolves the condition variables of one request without building a map.
type activation struct {
	principal *identityv1.Principal
	model     *policyv1.ModelFacts
	request   *policyv1.RequestFacts
	endpoints []*policyv1.EndpointFacts
}

var _ interpreter.Activation = (*activation)(nil)

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case varPrincipal:
		return a.principal, true
	case varModel:
		return a.model, true
	case varRequest:
		return a.request, true
	case varEndpoints:
		return a.endpoints, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

// eval evaluates a compiled condition; an error means it could not say.
func eval(prg cel.Program, a *activation) (bool, error) {
	out, _, err := prg.Eval(a)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("condition gave %s, not a bool", out.Type())
	}
	return b, nil
}
