// Package deploy holds the deployment artefacts of fmgate: the container image
// (Dockerfile), the resources seeded by the mesh (resources.yaml), and the Kubernetes
// kustomize base (k8s/). The repository root's docker-compose.yaml runs the mesh locally.
//
// The package has no code; its test checks that those files are consistent with the
// binary's services and flags, since no container engine runs in the test environment.
package deploy
