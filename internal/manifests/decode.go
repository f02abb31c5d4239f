package manifests

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Decode reads multi-document YAML (kustomize's or helm's) into objects,
// skipping empty documents.
func Decode(b []byte) ([]*unstructured.Unstructured, error) {
	d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		err := d.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("failed to decode object %d: %w", len(out)+1, err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

// Typed finds the object of kind and name in objs and converts it, refusing
// fields T does not have.
func Typed[T any](objs []*unstructured.Unstructured, kind, name string) (*T, error) {
	for _, u := range objs {
		if u.GetKind() == kind && u.GetName() == name {
			v := new(T)
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, v, true); err != nil {
				return nil, fmt.Errorf("failed to convert %s %s: %w", kind, name, err)
			}
			return v, nil
		}
	}
	return nil, fmt.Errorf("no %s %s among %d objects", kind, name, len(objs))
}
