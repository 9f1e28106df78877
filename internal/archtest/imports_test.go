package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const module = "github.com/fmgate/fmgate/"

// Services talk to each other only through generated clients: no package under
// services/<a>/ may import one under services/<b>/, tests included.
func TestServicesDoNotImportEachOther(t *testing.T) {
	root := filepath.Join("..", "..", "services")
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		owner := strings.SplitN(filepath.ToSlash(rel), "/", 2)[0]
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			other, ok := strings.CutPrefix(p, module+"services/")
			if !ok {
				continue
			}
			other = strings.SplitN(other, "/", 2)[0]
			assert.Equal(t, owner, other, "%s imports %s: services may only call each other through gen/ clients", path, p)
		}
		return nil
	})
	require.NoError(t, err)
	require.Greater(t, checked, 20, "the walk must have found the services' files")
}
