package deploy

import (
	"bytes"
	"cmp"
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
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
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, autoscalingv2.AddToScheme, policyv1.AddToScheme, discoveryv1.AddToScheme} {
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
	deployments map[string]*appsv1.Deployment
	deployment  *appsv1.Deployment // the gateway's
	services    []*corev1.Service
	configMaps  []*corev1.ConfigMap
	claims      []*corev1.PersistentVolumeClaim
	slices      []*discoveryv1.EndpointSlice
	hpa         *autoscalingv2.HorizontalPodAutoscaler
	pdbs        []*policyv1.PodDisruptionBudget
	pdb         *policyv1.PodDisruptionBudget // the gateway's
	files       []string
}

// decodeFile decodes every document of a manifest file strictly.
func decodeFile(t *testing.T, dec runtime.Decoder, file string) []runtime.Object {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var objs []runtime.Object
	for i, doc := range splitDocuments(data) {
		obj, _, err := dec.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s document %d: %v", filepath.Base(file), i+1, err)
		}
		objs = append(objs, obj)
	}
	return objs
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	dec := strictDecoder(t)
	files, err := filepath.Glob(filepath.Join(k8sDir(), "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := manifests{deployments: map[string]*appsv1.Deployment{}}
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		m.files = append(m.files, filepath.Base(f))
		for _, obj := range decodeFile(t, dec, f) {
			switch o := obj.(type) {
			case *appsv1.Deployment:
				if m.deployments[o.Name] != nil {
					t.Fatalf("%s: a second Deployment %s", filepath.Base(f), o.Name)
				}
				m.deployments[o.Name] = o
			case *corev1.Service:
				m.services = append(m.services, o)
			case *corev1.ConfigMap:
				m.configMaps = append(m.configMaps, o)
			case *corev1.PersistentVolumeClaim:
				m.claims = append(m.claims, o)
			case *discoveryv1.EndpointSlice:
				m.slices = append(m.slices, o)
			case *autoscalingv2.HorizontalPodAutoscaler:
				m.hpa = o
			case *policyv1.PodDisruptionBudget:
				m.pdbs = append(m.pdbs, o)
				if o.Name == gatewayName {
					m.pdb = o
				}
			default:
				t.Fatalf("%s: unexpected %T (a Secret belongs in secrets/, as a template)", filepath.Base(f), obj)
			}
		}
	}
	m.deployment = m.deployments[gatewayName]
	if m.deployment == nil || len(m.services) == 0 || len(m.configMaps) == 0 || m.hpa == nil || m.pdb == nil {
		t.Fatalf("deploy/k8s needs the gateway's Deployment, Service, ConfigMap, HPA and PDB (all named %s); found %+v", gatewayName, m)
	}
	return m
}

// gatewayName names the gateway's Deployment, HPA and PDB.
const gatewayName = "archway"

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

	// The Services of the gateway name its container ports (TestK8sServicesSelectPods checks
	// every Service); the stores it talks to are Services of deploy/k8s.
	public := 0
	for _, s := range m.services {
		if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
			continue
		}
		public++
		for _, p := range s.Spec.Ports {
			if resolve(p.TargetPort) == 0 || (p.TargetPort.Type == intstr.String && portByName[p.TargetPort.StrVal] == 0) {
				t.Errorf("Service %s port %s targets %s, not a container port", s.Name, p.Name, p.TargetPort.String())
			}
		}
	}
	if public == 0 {
		t.Error("no Service selects the gateway pods")
	}
	m.reach(t, "gateway consul.address", cfg.Consul.Address)
	for _, a := range cfg.Redis.Addrs {
		m.reach(t, "gateway redis.addrs", a)
	}
	if cfg.JWT != nil && cfg.JWT.JWKSURL != "" {
		m.reachURL(t, "gateway jwt.jwks_url", cfg.JWT.JWKSURL)
	}
	checkHardened(t, d)

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

// reach checks that host:port names a Service of deploy/k8s by the short name pods of the
// namespace resolve, with that port: the stores too are Services here (external.yaml).
func (m manifests) reach(t *testing.T, what, hostport string) {
	t.Helper()
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Errorf("%s: %q is not host:port", what, hostport)
		return
	}
	for _, s := range m.services {
		if s.Name != host {
			continue
		}
		for _, p := range s.Spec.Ports {
			if strconv.Itoa(int(p.Port)) == port {
				return
			}
		}
		t.Errorf("%s: Service %s has no port %s", what, host, port)
		return
	}
	t.Errorf("%s: %s is not a Service of deploy/k8s (a store outside the cluster is a Service of external.yaml)", what, host)
}

// reachURL is reach for a URL.
func (m manifests) reachURL(t *testing.T, what, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		t.Errorf("%s: %q is not a URL", what, raw)
		return &url.URL{}
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443", "postgres": "5432", "postgresql": "5432"}[u.Scheme]
	}
	m.reach(t, what, net.JoinHostPort(u.Hostname(), port))
	return u
}

// checkHardened holds a Deployment to the gateway's hardening: a non-root user, the runtime's
// seccomp profile, a read-only root filesystem without privilege escalation or capabilities,
// requests and a memory limit, pods spread over nodes.
func checkHardened(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	pod := d.Spec.Template
	podLabels := labels.Set(pod.Labels)
	if sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err != nil || !sel.Matches(podLabels) {
		t.Errorf("%s: the Deployment's selector does not select its pods: %v", d.Name, err)
	}
	psc := pod.Spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("%s: the pod does not require a non-root user", d.Name)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: the pod does not run under the runtime's default seccomp profile", d.Name)
	}
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: container %s's root filesystem is writable or it may escalate privileges", d.Name, c.Name)
		}
		if sc == nil || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("%s: container %s keeps Linux capabilities", d.Name, c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: container %s needs CPU and memory requests (scheduling, the HPA's utilization) and a memory limit", d.Name, c.Name)
		}
	}
	spread := false
	for _, c := range pod.Spec.TopologySpreadConstraints {
		sel, err := metav1.LabelSelectorAsSelector(c.LabelSelector)
		spread = spread || (c.TopologyKey == "kubernetes.io/hostname" && err == nil && sel.Matches(podLabels))
	}
	if !spread {
		t.Errorf("%s: the pods are not spread over nodes (topologySpreadConstraints on kubernetes.io/hostname)", d.Name)
	}
}

// secretTemplates loads deploy/k8s/secrets: every Secret the manifests read, with placeholder
// values, which kustomization.yaml does not apply.
func secretTemplates(t *testing.T) map[string]*corev1.Secret {
	t.Helper()
	dec := strictDecoder(t)
	files, err := filepath.Glob(filepath.Join(k8sDir(), "secrets", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Secret templates in deploy/k8s/secrets: %v", err)
	}
	out := map[string]*corev1.Secret{}
	for _, f := range files {
		for _, obj := range decodeFile(t, dec, f) {
			s, ok := obj.(*corev1.Secret)
			if !ok {
				t.Fatalf("%s: %T; only Secret templates belong in secrets/", filepath.Base(f), obj)
			}
			if out[s.Name] != nil {
				t.Fatalf("%s: Secret %s twice", filepath.Base(f), s.Name)
			}
			if len(s.Data) > 0 {
				t.Errorf("Secret template %s: use stringData, readable placeholders", s.Name)
			}
			out[s.Name] = s
		}
	}
	return out
}

// containerEnv resolves a container's environment as the kubelet would: values, the pod IP,
// ConfigMaps of deploy/k8s (envFrom and configMapKeyRef) and the Secret templates. secret
// reports which variables come from a Secret.
func (m manifests) containerEnv(t *testing.T, owner string, c corev1.Container, secrets map[string]*corev1.Secret) (env map[string]string, secret map[string]bool) {
	t.Helper()
	env, secret = map[string]string{}, map[string]bool{}
	configMap := func(name string) *corev1.ConfigMap {
		for _, cm := range m.configMaps {
			if cm.Name == name {
				return cm
			}
		}
		t.Errorf("%s: ConfigMap %s is not in deploy/k8s", owner, name)
		return &corev1.ConfigMap{}
	}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil || from.Prefix != "" {
			t.Errorf("%s: envFrom other than a whole ConfigMap", owner)
			continue
		}
		maps.Copy(env, configMap(from.ConfigMapRef.Name).Data)
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP":
			env[e.Name] = "10.1.2.3"
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			v, ok := configMap(ref.Name).Data[ref.Key]
			if !ok {
				t.Errorf("%s: env %s: ConfigMap %s has no key %s", owner, e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = v
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s := secrets[ref.Name]
			if s == nil {
				t.Errorf("%s: env %s: Secret %s has no template in deploy/k8s/secrets", owner, e.Name, ref.Name)
				continue
			}
			v, ok := s.StringData[ref.Key]
			if !ok {
				t.Errorf("%s: env %s: the template of Secret %s has no key %s", owner, e.Name, ref.Name, ref.Key)
			}
			env[e.Name], secret[e.Name] = v, true
		default:
			t.Errorf("%s: env %s: unexpected source", owner, e.Name)
		}
	}
	return env, secret
}

// serviceFlags reads, from the source, the environment variables a service's flags fall back
// to and each one's default (the string literals of the default argument): the common flags
// (config.RegisterCommon), the token verifier's when the service registers them, and its own.
func serviceFlags(t *testing.T, service string) map[string]string {
	t.Helper()
	main := filepath.Join(root(), "backends", service, "main.go")
	files := []string{filepath.Join(root(), "backends", "internal", "config", "config.go"), main}
	src, err := os.ReadFile(main)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(src, []byte("auth.RegisterVerifierFlags(")) {
		files = append(files, filepath.Join(root(), "backends", "internal", "auth", "flags.go"))
	}
	flags := map[string]string{}
	fset := gotoken.NewFileSet()
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 5 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !slices.Contains([]string{"StringVar", "IntVar", "DurationVar"}, sel.Sel.Name) {
				return true
			}
			lit, ok := call.Args[2].(*ast.BasicLit)
			if !ok || lit.Kind != gotoken.STRING {
				return true
			}
			name, _ := strconv.Unquote(lit.Value)
			var def strings.Builder
			ast.Inspect(call.Args[3], func(n ast.Node) bool {
				if l, ok := n.(*ast.BasicLit); ok && l.Kind == gotoken.STRING {
					s, _ := strconv.Unquote(l.Value)
					def.WriteString(s)
				}
				return true
			})
			flags[name] = def.String()
			return true
		})
	}
	if _, ok := flags["DATABASE_URL"]; !ok || len(flags) < 8 {
		t.Fatalf("%s: found only %v in its flags' source: has the registration changed shape?", service, flags)
	}
	return flags
}

// TestK8sServiceDeployments: each service's Deployment sets what the service reads, probes what
// it listens on, reaches its stores and peers through Services of deploy/k8s, and shuts down
// within its grace.
func TestK8sServiceDeployments(t *testing.T) {
	m := loadManifests(t)
	secrets := secretTemplates(t)
	serverSrc, err := os.ReadFile(filepath.Join(root(), "backends", "internal", "server", "server.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range []struct {
		name        string
		minReplicas int32
	}{
		{"users", 2}, // one signing key, from a Secret: users.yaml
		{"products", 2},
		{"orders", 2},
		{"payments", 2},
	} {
		t.Run(svc.name, func(t *testing.T) {
			d := m.deployments[svc.name]
			if d == nil {
				t.Fatalf("no Deployment %s", svc.name)
			}
			checkHardened(t, d)
			pod := d.Spec.Template.Spec
			if len(pod.Containers) != 1 {
				t.Fatalf("%d containers", len(pod.Containers))
			}
			c := pod.Containers[0]
			if img, _, _ := strings.Cut(c.Image, ":"); img != "archway/"+svc.name {
				t.Errorf("image %s, not archway/%s", c.Image, svc.name)
			}
			if d.Spec.Replicas == nil || *d.Spec.Replicas < svc.minReplicas {
				t.Errorf("replicas %v, want at least %d", d.Spec.Replicas, svc.minReplicas)
			}

			// Every variable set is one the service reads (a misspelt name would be ignored and
			// the default used), and every variable whose default cannot work in a pod is set.
			env, fromSecret := m.containerEnv(t, svc.name, c, secrets)
			flags := serviceFlags(t, svc.name)
			for k := range env {
				if _, ok := flags[k]; !ok {
					t.Errorf("sets %s, which %s does not read", k, svc.name)
				}
			}
			for k, def := range flags {
				// Ignored when CONSUL_HTTP_ADDR is set: orders then finds its peers in Consul.
				if k == "PRODUCTS_URL" || k == "PAYMENTS_URL" {
					continue
				}
				// The listen address, the Consul registration, and defaults on loopback or in
				// ./data (the root filesystem is read-only and holds no database).
				need := slices.Contains([]string{"ADDR", "CONSUL_HTTP_ADDR", "ADVERTISE_ADDR"}, k) ||
					strings.Contains(def, "127.0.0.1") || strings.Contains(def, "./data")
				if _, ok := env[k]; need && !ok {
					t.Errorf("%s is not set; its default %q does not work in a pod", k, def)
				}
			}
			if env["ADVERTISE_ADDR"] != "10.1.2.3" {
				t.Errorf("ADVERTISE_ADDR is %q, not the pod IP: Consul's check and the gateway must reach this pod", env["ADVERTISE_ADDR"])
			}
			m.reach(t, "CONSUL_HTTP_ADDR", env["CONSUL_HTTP_ADDR"])
			if _, ok := flags["JWKS_URL"]; ok {
				if u := m.reachURL(t, "JWKS_URL", env["JWKS_URL"]); u.Hostname() != "users" || u.Path != "/.well-known/jwks.json" {
					t.Errorf("JWKS_URL %s is not the users Service's key set", env["JWKS_URL"])
				}
			}
			// The database URL carries a password: from a Secret, naming the PostgreSQL Service.
			if !fromSecret["DATABASE_URL"] {
				t.Error("DATABASE_URL does not come from a Secret")
			}
			if u := m.reachURL(t, "DATABASE_URL", env["DATABASE_URL"]); u.Scheme != "postgres" && u.Scheme != "postgresql" {
				t.Errorf("DATABASE_URL %q is not PostgreSQL: a SQLite file would be per pod", env["DATABASE_URL"])
			}

			// Ports and probes: what ADDR listens on, /health as the service serves it.
			listen := int32(portOf(t, "ADDR", env["ADDR"]))
			portByName := map[string]int32{}
			for _, p := range c.Ports {
				portByName[p.Name] = p.ContainerPort
			}
			if portByName["http"] != listen {
				t.Errorf("container port http is %d, ADDR listens on %d", portByName["http"], listen)
			}
			resolve := func(p intstr.IntOrString) int32 {
				if p.Type == intstr.String {
					return portByName[p.StrVal]
				}
				return p.IntVal
			}
			r := c.ReadinessProbe
			if r == nil || r.HTTPGet == nil {
				t.Fatal("no HTTP readiness probe")
			}
			if !bytes.Contains(serverSrc, []byte(`s.Handle(http.MethodGet, "`+r.HTTPGet.Path+`"`)) {
				t.Errorf("readiness probe path %s is not a GET route of backends/internal/server", r.HTTPGet.Path)
			}
			if resolve(r.HTTPGet.Port) != listen {
				t.Errorf("readiness probe port %s is not ADDR's %d", r.HTTPGet.Port.String(), listen)
			}
			l := c.LivenessProbe
			switch {
			case l == nil:
				t.Error("no liveness probe")
			case l.TCPSocket != nil && resolve(l.TCPSocket.Port) == listen:
			case l.HTTPGet != nil && resolve(l.HTTPGet.Port) == listen:
			default:
				t.Errorf("liveness probe does not ask port %d", listen)
			}
			if a := d.Spec.Template.Annotations; a["prometheus.io/port"] != strconv.Itoa(int(listen)) || a["prometheus.io/path"] != "/metrics" {
				t.Errorf("prometheus.io annotations %v do not point at :%d/metrics", a, listen)
			}

			// Shutdown: longer than the preStop pause plus SHUTDOWN_TIMEOUT.
			drain, err := time.ParseDuration(cmp.Or(env["SHUTDOWN_TIMEOUT"], flags["SHUTDOWN_TIMEOUT"], "10s"))
			if err != nil {
				t.Fatalf("SHUTDOWN_TIMEOUT: %v", err)
			}
			pause := int64(0)
			if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
				pause = c.Lifecycle.PreStop.Sleep.Seconds
			}
			grace := int64(30)
			if pod.TerminationGracePeriodSeconds != nil {
				grace = *pod.TerminationGracePeriodSeconds
			}
			if grace <= pause+int64(drain.Seconds()) {
				t.Errorf("terminationGracePeriodSeconds %d must exceed preStop %ds + SHUTDOWN_TIMEOUT %s", grace, pause, drain)
			}

			// Rolling updates keep a serving pod until its replacement is ready, unless a
			// ReadWriteOnce volume makes the old pod let go first.
			rwo := false
			for _, v := range pod.Volumes {
				if v.PersistentVolumeClaim != nil {
					for _, pvc := range m.claims {
						rwo = rwo || (pvc.Name == v.PersistentVolumeClaim.ClaimName && slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteOnce))
					}
				}
			}
			switch s := d.Spec.Strategy; {
			case rwo && s.Type != appsv1.RecreateDeploymentStrategyType:
				t.Error("a ReadWriteOnce volume needs the Recreate strategy: a surge pod on another node could not attach it")
			case !rwo && (s.RollingUpdate == nil || s.RollingUpdate.MaxUnavailable == nil || s.RollingUpdate.MaxUnavailable.IntValue() != 0):
				t.Error("rolling updates may take a serving pod down before its replacement is ready")
			}

			if svc.name == "users" {
				checkUsersKey(t, m, d, env)
			}
		})
	}
}

// checkUsersKey: every users replica signs with the key of one Secret. The service refuses a
// key file that its group may read, and the kubelet makes a Secret's files group-readable for
// fsGroup, so an init container running `users install-key` copies the key from the Secret's
// volume into a volume of the pod's own (mode 0600), which the service reads.
func checkUsersKey(t *testing.T, m manifests, d *appsv1.Deployment, env map[string]string) {
	t.Helper()
	if env["JWT_SECRET"] != "" {
		return
	}
	secrets := secretTemplates(t)
	pod := d.Spec.Template.Spec
	volume := func(name string) *corev1.Volume {
		for i := range pod.Volumes {
			if pod.Volumes[i].Name == name {
				return &pod.Volumes[i]
			}
		}
		return nil
	}
	// mountOf finds the mount of c that holds path, and its volume.
	mountOf := func(c corev1.Container, path string) (*corev1.VolumeMount, *corev1.Volume) {
		for i, vm := range c.VolumeMounts {
			if strings.HasPrefix(path, vm.MountPath+"/") {
				return &c.VolumeMounts[i], volume(vm.Name)
			}
		}
		return nil, nil
	}

	key := env["JWT_PRIVATE_KEY_FILE"]
	if key == "" || !filepath.IsAbs(key) {
		t.Fatalf("JWT_PRIVATE_KEY_FILE %q: an absolute path on a volume", key)
	}
	vm, v := mountOf(pod.Containers[0], key)
	if v == nil || v.EmptyDir == nil {
		t.Fatalf("JWT_PRIVATE_KEY_FILE %s is not on an emptyDir of the pod: a Secret's file would be group-readable and refused, a claim would tie replicas to one key per volume", key)
	}
	if !vm.ReadOnly {
		t.Error("the service mounts its key's volume writable: it only reads the installed key")
	}

	var install *corev1.Container
	for i, c := range pod.InitContainers {
		if slices.Equal(c.Args, []string{"install-key"}) {
			install = &pod.InitContainers[i]
		}
	}
	if install == nil {
		t.Fatal("no init container runs `users install-key`: nothing puts the Secret's key where the service reads it")
	}
	if install.Image != pod.Containers[0].Image {
		t.Errorf("install-key runs image %s, the service %s", install.Image, pod.Containers[0].Image)
	}
	ienv, _ := m.containerEnv(t, "users install-key", *install, secrets)
	if ienv["JWT_PRIVATE_KEY_FILE"] != key {
		t.Errorf("install-key writes %q, the service reads %q", ienv["JWT_PRIVATE_KEY_FILE"], key)
	}
	if ivm, iv := mountOf(*install, key); iv == nil || iv.Name != v.Name || ivm.MountPath != vm.MountPath || ivm.ReadOnly {
		t.Errorf("install-key does not write %s into the volume %s the service reads it from", key, v.Name)
	}
	src := ienv["JWT_PRIVATE_KEY_SOURCE"]
	svm, sv := mountOf(*install, src)
	if sv == nil || sv.Secret == nil {
		t.Fatalf("JWT_PRIVATE_KEY_SOURCE %q is not on a Secret volume", src)
	}
	if secret := secrets[sv.Secret.SecretName]; secret == nil {
		t.Errorf("Secret %s has no template in deploy/k8s/secrets", sv.Secret.SecretName)
	} else if file := strings.TrimPrefix(src, svm.MountPath+"/"); !strings.Contains(secret.StringData[file], "PRIVATE KEY") {
		t.Errorf("Secret %s's template has no PEM private key under %q", sv.Secret.SecretName, file)
	}
	// The Secret's files are root's: install-key (not root) reads them through fsGroup.
	if sc := pod.SecurityContext; sc == nil || sc.FSGroup == nil || sc.RunAsGroup == nil || *sc.FSGroup != *sc.RunAsGroup {
		t.Error("fsGroup must be the pod's group: install-key could not read the Secret's key")
	}
}

// TestK8sServicesSelectPods: every Service reaches pods of deploy/k8s or a store named in
// external.yaml; every Deployment has a PDB that lets drains proceed; every ConfigMap, claim
// and Secret a pod reads exists (Secrets as templates); every image can be pinned by the
// kustomization.
func TestK8sServicesSelectPods(t *testing.T) {
	m := loadManifests(t)
	secrets := secretTemplates(t)
	selected := func(sel labels.Selector) []*appsv1.Deployment {
		var out []*appsv1.Deployment
		for _, name := range slices.Sorted(maps.Keys(m.deployments)) {
			if d := m.deployments[name]; sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				out = append(out, d)
			}
		}
		return out
	}
	served := map[string]bool{}
	for _, s := range m.services {
		if len(s.Spec.Selector) == 0 {
			checkExternal(t, m, s)
			continue
		}
		ds := selected(labels.SelectorFromSet(s.Spec.Selector))
		if len(ds) != 1 {
			t.Errorf("Service %s selects the pods of %d Deployments, want 1", s.Name, len(ds))
			continue
		}
		served[ds[0].Name] = true
		c := ds[0].Spec.Template.Spec.Containers[0]
		for _, p := range s.Spec.Ports {
			ok := slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool {
				return (p.TargetPort.Type == intstr.String && cp.Name == p.TargetPort.StrVal) ||
					(p.TargetPort.Type == intstr.Int && cp.ContainerPort == cmp.Or(p.TargetPort.IntVal, p.Port))
			})
			if !ok {
				t.Errorf("Service %s port %s targets %s, not a port of %s", s.Name, p.Name, p.TargetPort.String(), ds[0].Name)
			}
		}
	}
	pdbs := map[string]int{}
	for _, p := range m.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil {
			t.Errorf("PDB %s: %v", p.Name, err)
			continue
		}
		ds := selected(sel)
		if len(ds) != 1 {
			t.Errorf("PDB %s selects the pods of %d Deployments, want 1", p.Name, len(ds))
			continue
		}
		pdbs[ds[0].Name]++
		replicas := int32(1)
		switch {
		case ds[0].Spec.Replicas != nil:
			replicas = *ds[0].Spec.Replicas
		case m.hpa.Spec.ScaleTargetRef.Name == ds[0].Name && m.hpa.Spec.MinReplicas != nil:
			replicas = *m.hpa.Spec.MinReplicas
		}
		switch {
		case p.Spec.MaxUnavailable != nil:
			if p.Spec.MaxUnavailable.IntValue() < 1 {
				t.Errorf("PDB %s: maxUnavailable < 1 blocks every drain", p.Name)
			}
		case p.Spec.MinAvailable != nil:
			if int32(p.Spec.MinAvailable.IntValue()) >= replicas {
				t.Errorf("PDB %s: minAvailable reaches the %d replicas of %s: drains would block", p.Name, replicas, ds[0].Name)
			}
		default:
			t.Errorf("PDB %s sets neither minAvailable nor maxUnavailable", p.Name)
		}
	}

	kust := readYAML[struct {
		Images []struct{ Name string }
	}](t, filepath.Join(k8sDir(), "kustomization.yaml"))
	for _, name := range slices.Sorted(maps.Keys(m.deployments)) {
		d := m.deployments[name]
		if !served[name] {
			t.Errorf("no Service selects the pods of %s", name)
		}
		if pdbs[name] != 1 {
			t.Errorf("%d PDBs select the pods of %s, want 1", pdbs[name], name)
		}
		pod := d.Spec.Template.Spec
		for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
			img, _, _ := strings.Cut(c.Image, ":")
			if !slices.ContainsFunc(kust.Images, func(i struct{ Name string }) bool { return i.Name == img }) {
				t.Errorf("%s: image %s has no entry in kustomization.yaml's images", name, img)
			}
			m.containerEnv(t, name, c, secrets)
			for _, vm := range c.VolumeMounts {
				if !slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name }) {
					t.Errorf("%s: mounts volume %s, which the pod does not have", name, vm.Name)
				}
			}
		}
		for _, v := range pod.Volumes {
			switch {
			case v.ConfigMap != nil:
				if !slices.ContainsFunc(m.configMaps, func(c *corev1.ConfigMap) bool { return c.Name == v.ConfigMap.Name }) {
					t.Errorf("%s: volume %s: ConfigMap %s is not in deploy/k8s", name, v.Name, v.ConfigMap.Name)
				}
			case v.PersistentVolumeClaim != nil:
				if !slices.ContainsFunc(m.claims, func(c *corev1.PersistentVolumeClaim) bool { return c.Name == v.PersistentVolumeClaim.ClaimName }) {
					t.Errorf("%s: volume %s: claim %s is not in deploy/k8s", name, v.Name, v.PersistentVolumeClaim.ClaimName)
				}
			case v.Secret != nil:
				if secrets[v.Secret.SecretName] == nil {
					t.Errorf("%s: volume %s: Secret %s has no template in deploy/k8s/secrets", name, v.Name, v.Secret.SecretName)
				}
			}
		}
	}
}

// checkExternal: a Service without a selector is a store outside deploy/k8s, by DNS name
// (ExternalName) or by address (EndpointSlices labelled with its name, serving its ports).
func checkExternal(t *testing.T, m manifests, s *corev1.Service) {
	t.Helper()
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		if s.Spec.ExternalName == "" {
			t.Errorf("Service %s: ExternalName without a name", s.Name)
		}
		return
	}
	var own []*discoveryv1.EndpointSlice
	for _, es := range m.slices {
		if es.Labels[discoveryv1.LabelServiceName] == s.Name {
			own = append(own, es)
		}
	}
	if len(own) == 0 {
		t.Errorf("Service %s has no selector, no ExternalName and no EndpointSlice: it reaches nothing", s.Name)
	}
	for _, p := range s.Spec.Ports {
		for _, es := range own {
			ok := slices.ContainsFunc(es.Ports, func(ep discoveryv1.EndpointPort) bool {
				return ep.Name != nil && *ep.Name == p.Name && ep.Port != nil && *ep.Port == cmp.Or(p.TargetPort.IntVal, p.Port)
			})
			if !ok {
				t.Errorf("EndpointSlice %s has no port %s %d for Service %s", es.Name, p.Name, p.Port, s.Name)
			}
			if len(es.Endpoints) == 0 || len(es.Endpoints[0].Addresses) == 0 {
				t.Errorf("EndpointSlice %s has no address", es.Name)
			}
		}
	}
}

// TestK8sGatewayTLS: the gateway pod mounts a kubernetes.io/tls Secret where the gateway's
// non-root user can read the key and nobody else can, where Secret updates reach it, and the
// TLS listener of the ConfigMap's routes file serves exactly the mounted files on 443.
func TestK8sGatewayTLS(t *testing.T) {
	m := loadManifests(t)
	secrets := secretTemplates(t)
	pod := m.deployment.Spec.Template.Spec
	var vol *corev1.Volume
	for i, v := range pod.Volumes {
		if v.Secret != nil && secrets[v.Secret.SecretName] != nil && secrets[v.Secret.SecretName].Type == corev1.SecretTypeTLS {
			vol = &pod.Volumes[i]
		}
	}
	if vol == nil {
		t.Fatal("the gateway mounts no Secret of type kubernetes.io/tls")
	}
	tmpl := secrets[vol.Secret.SecretName]
	for _, k := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey} {
		if _, ok := tmpl.StringData[k]; !ok {
			t.Errorf("the template of Secret %s has no %s", tmpl.Name, k)
		}
	}
	if len(vol.Secret.Items) > 0 {
		t.Error("the TLS volume renames its keys: the documented files are tls.crt and tls.key")
	}
	c := pod.Containers[0]
	mount := ""
	for _, vm := range c.VolumeMounts {
		if vm.Name != vol.Name {
			continue
		}
		mount = vm.MountPath
		if !vm.ReadOnly {
			t.Error("the TLS Secret is mounted writable")
		}
	}
	if mount == "" {
		t.Fatalf("volume %s is not mounted into the gateway container", vol.Name)
	}
	for _, vm := range c.VolumeMounts {
		if vm.Name != vol.Name && (strings.HasPrefix(mount, vm.MountPath+"/") || strings.HasPrefix(vm.MountPath, mount+"/")) {
			t.Errorf("the TLS mount %s and %s are nested: a mount point inside a ConfigMap's read-only, rewritten volume", mount, vm.MountPath)
		}
	}
	// Secret files belong to root; fsGroup gives them the pod's group, and the mode decides.
	mode := int32(corev1.SecretVolumeSourceDefaultMode)
	if vol.Secret.DefaultMode != nil {
		mode = *vol.Secret.DefaultMode
	}
	if mode&0o004 != 0 {
		t.Errorf("the TLS key is readable by every user (mode %04o)", mode)
	}
	if sc := pod.SecurityContext; mode&0o040 == 0 || sc == nil || sc.FSGroup == nil {
		t.Errorf("the gateway's non-root user cannot read the TLS key (mode %04o): it needs fsGroup and group read", mode)
	}

	// The ConfigMap's routes file (deploy/compose/routes.yaml) carries the listeners: loaded with
	// the pod's environment, a plain one the probes ask, redirecting to HTTPS, and a TLS one
	// serving exactly the mounted files, each on a container port the Service exposes.
	routes, err := os.ReadFile(filepath.Join(root(), "deploy", "compose", "routes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	env, fromSecret := m.containerEnv(t, gatewayName, c, secrets)
	for k := range fromSecret {
		env[k] = strings.Repeat("s", 32)
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cfg, err := config.ParseWithEnv(routes, "routes.yaml", lookup)
	if err != nil {
		t.Fatal(err)
	}
	containerPort := func(name string) int {
		for _, cp := range c.Ports {
			if cp.Name == name {
				return int(cp.ContainerPort)
			}
		}
		return -1
	}
	servicePorts := map[string]int32{}
	for _, svc := range m.services {
		if labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(m.deployment.Spec.Template.Labels)) {
			for _, sp := range svc.Spec.Ports {
				if sp.TargetPort.Type == intstr.String {
					servicePorts[sp.TargetPort.StrVal] = sp.Port
				}
			}
		}
	}
	var plain, tls int
	for _, l := range cfg.Server.Listeners {
		if l.TLS == nil {
			plain++
			// The probes ask the plain listener, the container's port http; the redirect goes to
			// HTTPS on 443, where the pod listens itself (behind the Service's 443).
			if p := c.ReadinessProbe.HTTPGet.Port; p.StrVal != "http" || containerPort("http") != portOf(t, "listener addr", l.Addr) {
				t.Errorf("the plain listener %s is not the port the probes ask", l.Addr)
			}
			if !l.RedirectHTTPS {
				t.Errorf("the plain listener %s does not redirect to HTTPS", l.Addr)
			}
			if servicePorts["http"] != 80 {
				t.Errorf("the Service exposes container port http as %d, want 80", servicePorts["http"])
			}
			continue
		}
		tls++
		if len(l.TLS.Certificates) != 1 || l.TLS.Certificates[0].Cert != mount+"/"+corev1.TLSCertKey || l.TLS.Certificates[0].Key != mount+"/"+corev1.TLSPrivateKeyKey {
			t.Errorf("the TLS listener serves %+v, not %s/tls.crt and tls.key", l.TLS.Certificates, mount)
		}
		if containerPort("https") != portOf(t, "listener addr", l.Addr) || portOf(t, "listener addr", l.Addr) != 443 {
			t.Errorf("the TLS listener %s is not the container port https on 443 (redirects name no port)", l.Addr)
		}
		if servicePorts["https"] != 443 {
			t.Errorf("the Service exposes container port https as %d, want 443", servicePorts["https"])
		}
	}
	if plain != 1 || tls != 1 {
		t.Errorf("the listeners: %d plain and %d TLS, want one of each", plain, tls)
	}
	if vol.Secret.Optional != nil && *vol.Secret.Optional {
		t.Error("the TLS Secret is optional, but the routes file's HTTPS listener needs its files")
	}
	// Ports under 1024 without capabilities: the pod lowers the unprivileged port start.
	if sc := pod.SecurityContext; sc == nil || !slices.ContainsFunc(sc.Sysctls, func(s corev1.Sysctl) bool {
		return s.Name == "net.ipv4.ip_unprivileged_port_start" && s.Value == "0"
	}) {
		t.Error("the gateway listens on 80 and 443 as a non-root user without net.ipv4.ip_unprivileged_port_start=0")
	}
}

// TestK8sDocsSecrets: the documented kubectl commands create every Opaque Secret of the
// templates with exactly its keys.
func TestK8sDocsSecrets(t *testing.T) {
	secrets := secretTemplates(t)
	created := map[string][]string{}
	for _, l := range docBlock(t, "k8s-secrets") {
		f := strings.Fields(l)
		i := slices.Index(f, "generic")
		if i < 0 || i+1 >= len(f) {
			continue
		}
		for _, a := range f[i+2:] {
			if k, ok := strings.CutPrefix(a, "--from-literal="); ok {
				k, _, _ = strings.Cut(k, "=")
				created[f[i+1]] = append(created[f[i+1]], k)
			}
			// --from-file=[key=]path: the key is the file's base name unless given.
			if k, ok := strings.CutPrefix(a, "--from-file="); ok {
				if key, _, named := strings.Cut(k, "="); named {
					k = key
				} else {
					k = filepath.Base(k)
				}
				created[f[i+1]] = append(created[f[i+1]], k)
			}
		}
	}
	for name, s := range secrets {
		if s.Type != corev1.SecretTypeOpaque && s.Type != "" {
			continue
		}
		if want := slices.Sorted(maps.Keys(s.StringData)); !slices.Equal(sorted(created[name]), want) {
			t.Errorf("docs create Secret %s with keys %v, the template has %v", name, created[name], want)
		}
	}
	if len(created) == 0 {
		t.Error("the documented block creates no Secret")
	}
}
