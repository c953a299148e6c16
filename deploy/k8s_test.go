package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/archway-gateway/archway/gateway/config"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func k8sDir() string { return filepath.Join(root(), "deploy", "k8s") }

// strictDecoder decodes manifests into the k8s.io/api types the way the API server's strict
// field validation does: an unknown or duplicate field is an error.
func strictDecoder(t *testing.T) runtime.Decoder {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, autoscalingv2.AddToScheme, policyv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// splitDocuments splits a multi-document YAML file on its --- lines.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(data, []byte("\n---\n")) {
		if len(bytes.TrimSpace(stripComments(d))) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

func stripComments(d []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(d, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

type manifests struct {
	deployment *appsv1.Deployment
	services   []*corev1.Service
	configMaps []*corev1.ConfigMap
	hpa        *autoscalingv2.HorizontalPodAutoscaler
	pdb        *policyv1.PodDisruptionBudget
	files      []string
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	dec := strictDecoder(t)
	files, err := filepath.Glob(filepath.Join(k8sDir(), "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var m manifests
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		m.files = append(m.files, filepath.Base(f))
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitDocuments(data) {
			obj, gvk, err := dec.Decode(doc, nil, nil)
			if err != nil {
				t.Fatalf("%s document %d: %v", filepath.Base(f), i+1, err)
			}
			switch o := obj.(type) {
			case *appsv1.Deployment:
				if m.deployment != nil {
					t.Fatalf("%s: a second Deployment", filepath.Base(f))
				}
				m.deployment = o
			case *corev1.Service:
				m.services = append(m.services, o)
			case *corev1.ConfigMap:
				m.configMaps = append(m.configMaps, o)
			case *autoscalingv2.HorizontalPodAutoscaler:
				m.hpa = o
			case *policyv1.PodDisruptionBudget:
				m.pdb = o
			default:
				t.Fatalf("%s: unexpected %s", filepath.Base(f), gvk)
			}
		}
	}
	if m.deployment == nil || len(m.services) == 0 || len(m.configMaps) == 0 || m.hpa == nil || m.pdb == nil {
		t.Fatalf("deploy/k8s needs a Deployment, a Service, a ConfigMap, an HPA and a PDB; found %+v", m)
	}
	return m
}

// TestK8sDecodingIsStrict: the decoder the manifests go through refuses what the API server's
// strict validation refuses, so the manifests' passing means something.
func TestK8sDecodingIsStrict(t *testing.T) {
	dec := strictDecoder(t)
	for name, doc := range map[string]string{
		"unknown field":   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndatta: {a: b}\n",
		"misspelt nested": "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: x}\nspec: {maxUnavailble: 1}\n",
		"duplicate field": "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {type: ClusterIP, type: NodePort}\n",
		"wrong type":      "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: x}\nspec: {minReplicas: two}\n",
	} {
		if _, _, err := dec.Decode([]byte(doc), nil, nil); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// TestK8sManifests: the manifests decode strictly and agree with each other and with the
// gateway's configuration, loaded from the ConfigMap with the container's environment.
func TestK8sManifests(t *testing.T) {
	m := loadManifests(t)
	d := m.deployment
	pod := d.Spec.Template
	podLabels := labels.Set(pod.Labels)

	// The kustomization applies every manifest.
	kust := readYAML[struct{ Resources []string }](t, filepath.Join(k8sDir(), "kustomization.yaml"))
	if !slices.Equal(sorted(kust.Resources), sorted(m.files)) {
		t.Errorf("kustomization.yaml resources %v, manifests %v", kust.Resources, m.files)
	}

	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Fatalf("the Deployment's selector does not select its pods: %v", err)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]

	// The routes file the container reads: a ConfigMap mounted at ARCHWAY_CONFIG.
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP":
			env[e.Name] = "10.1.2.3"
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = strings.Repeat("s", 32)
		default:
			t.Errorf("env %s: unexpected source", e.Name)
		}
	}
	cfgPath := env["ARCHWAY_CONFIG"]
	var cm *corev1.ConfigMap
	for _, vm := range c.VolumeMounts {
		if vm.SubPath != "" {
			t.Errorf("volume %s is mounted with subPath: ConfigMap updates would never reach it", vm.Name)
		}
		if filepath.Dir(cfgPath) != vm.MountPath {
			continue
		}
		for _, v := range pod.Spec.Volumes {
			if v.Name == vm.Name && v.ConfigMap != nil {
				for _, cand := range m.configMaps {
					if cand.Name == v.ConfigMap.Name {
						cm = cand
					}
				}
			}
		}
	}
	if cm == nil {
		t.Fatalf("no ConfigMap of deploy/k8s is mounted where ARCHWAY_CONFIG=%s points", cfgPath)
	}
	routes, ok := cm.Data[filepath.Base(cfgPath)]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s", cm.Name, filepath.Base(cfgPath))
	}
	compose, err := os.ReadFile(filepath.Join(root(), "deploy", "compose", "routes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if routes != string(compose) {
		t.Errorf("ConfigMap %s's routes.yaml differs from deploy/compose/routes.yaml: keep one configuration for both", cm.Name)
	}
	cfg, err := config.ParseWithEnv([]byte(routes), "configmap.yaml:"+cm.Name, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatalf("the gateway refuses the ConfigMap's routes.yaml with the pod's environment:\n%v", err)
	}
	if cfg.Consul == nil || cfg.Consul.Register == nil || cfg.Consul.Register.Address != "10.1.2.3" {
		t.Errorf("the gateway does not register in Consul at its pod IP")
	}

	// Ports: the container's ports are the listeners of the configuration.
	portByName := map[string]int32{}
	for _, p := range c.Ports {
		portByName[p.Name] = p.ContainerPort
	}
	if got, want := portByName["http"], int32(portOf(t, "server.listen", cfg.Server.Listen)); got != want {
		t.Errorf("container port http is %d, server.listen is :%d", got, want)
	}
	if got, want := portByName["admin"], int32(portOf(t, "admin.listen", cfg.Admin.Listen)); got != want {
		t.Errorf("container port admin is %d, admin.listen is :%d", got, want)
	}
	resolve := func(p intstr.IntOrString) int32 {
		if p.Type == intstr.String {
			return portByName[p.StrVal]
		}
		return p.IntVal
	}
	if pod.Annotations["prometheus.io/port"] != strconv.Itoa(int(portByName["admin"])) || pod.Annotations["prometheus.io/path"] != "/metrics" {
		t.Errorf("prometheus.io annotations %v do not point at the admin listener's /metrics", pod.Annotations)
	}

	// Probes: the gateway's own health path on its public listener.
	for name, probe := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if probe == nil || probe.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", name)
			continue
		}
		if probe.HTTPGet.Path != cfg.Server.HealthPath {
			t.Errorf("%s probe path %s, server.health_path is %s", name, probe.HTTPGet.Path, cfg.Server.HealthPath)
		}
		if resolve(probe.HTTPGet.Port) != portByName["http"] {
			t.Errorf("%s probe port %s is not the public listener", name, probe.HTTPGet.Port.String())
		}
	}
	// Shutdown: the pod gets longer than the preStop pause plus the drain.
	pause := int64(0)
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		pause = c.Lifecycle.PreStop.Sleep.Seconds
	} else {
		t.Errorf("no preStop pause: the pod would stop listening while endpoints still send it traffic")
	}
	grace := int64(30)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	if need := pause + int64(cfg.Server.ShutdownGrace.D().Seconds()); grace <= need {
		t.Errorf("terminationGracePeriodSeconds %d must exceed preStop %ds + shutdown_grace %s", grace, pause, cfg.Server.ShutdownGrace.D())
	}

	// Hardening.
	sc := c.SecurityContext
	if pod.Spec.SecurityContext == nil || pod.Spec.SecurityContext.RunAsNonRoot == nil || !*pod.Spec.SecurityContext.RunAsNonRoot {
		t.Error("the pod does not require a non-root user")
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("the container's root filesystem is writable or it may escalate privileges")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("the container needs a CPU request (the HPA's utilization is relative to it) and a memory limit")
	}

	// Services select the pods and name container ports.
	for _, s := range m.services {
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) || len(s.Spec.Selector) == 0 {
			t.Errorf("Service %s does not select the gateway pods", s.Name)
		}
		for _, p := range s.Spec.Ports {
			if resolve(p.TargetPort) == 0 || (p.TargetPort.Type == intstr.String && portByName[p.TargetPort.StrVal] == 0) {
				t.Errorf("Service %s port %s targets %s, not a container port", s.Name, p.Name, p.TargetPort.String())
			}
		}
	}

	// The HPA scales this Deployment from at least 2; the PDB keeps pods up during drains
	// without blocking them.
	ref := m.hpa.Spec.ScaleTargetRef
	if ref.Kind != "Deployment" || ref.Name != d.Name || ref.APIVersion != "apps/v1" {
		t.Errorf("HPA scales %s/%s %s, not the Deployment %s", ref.APIVersion, ref.Kind, ref.Name, d.Name)
	}
	if m.hpa.Spec.MinReplicas == nil || *m.hpa.Spec.MinReplicas < 2 || m.hpa.Spec.MaxReplicas < *m.hpa.Spec.MinReplicas {
		t.Errorf("HPA replicas %v..%d: at least 2", m.hpa.Spec.MinReplicas, m.hpa.Spec.MaxReplicas)
	}
	if d.Spec.Replicas != nil {
		t.Error("the Deployment sets replicas, which every kubectl apply would reset under the HPA")
	}
	pdbSel, err := metav1.LabelSelectorAsSelector(m.pdb.Spec.Selector)
	if err != nil || !pdbSel.Matches(podLabels) {
		t.Errorf("the PDB does not select the gateway pods")
	}
	switch {
	case m.pdb.Spec.MaxUnavailable != nil:
		if m.pdb.Spec.MaxUnavailable.IntValue() < 1 {
			t.Error("PDB maxUnavailable < 1 blocks every drain")
		}
	case m.pdb.Spec.MinAvailable != nil:
		if m.pdb.Spec.MinAvailable.IntValue() >= int(*m.hpa.Spec.MinReplicas) {
			t.Error("PDB minAvailable reaches the HPA's minimum: drains would block")
		}
	default:
		t.Error("the PDB sets neither minAvailable nor maxUnavailable")
	}
	if s := d.Spec.Strategy.RollingUpdate; s == nil || s.MaxUnavailable == nil || s.MaxUnavailable.IntValue() != 0 {
		t.Error("rolling updates may take a serving pod down before its replacement is ready")
	}
}

func sorted(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
