//! The service packaging and observability files in deploy/ against the code and each other:
//! Kubernetes manifests (probes on the real endpoints and port, three replicas, IRSA, non-root,
//! the policies ConfigMap equal to policies/), every region's overlay as `kubectl kustomize`
//! renders it (its region, the monitoring component equal to the rule file and the dashboard),
//! the Dockerfile and systemd unit, every PromQL expression of the alert rules and the Grafana
//! dashboard (they must parse and name only metrics that `Metrics::new` exports), and the
//! promtool unit tests of the rules (every alert fires in one and stays silent in another).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use mrgc_autoscaler::telemetry::Metrics;
use promql_parser::parser::Expr;
use promql_parser::util::{ExprVisitor, walk_expr};
use serde::Deserialize;
use serde_yaml::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// Every YAML document of a file.
fn yaml_docs(rel: &str) -> Vec<Value> {
    let text = read(rel);
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// `v.a.b.c` for a dotted path; arrays by index ("containers.0").
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut cur = v;
    for key in path.split('.') {
        cur = match key.parse::<usize>() {
            Ok(i) => cur.get(i),
            Err(_) => cur.get(key),
        }
        .unwrap_or_else(|| panic!("missing `{path}` (at `{key}`) in {v:?}"));
    }
    cur
}

fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    at(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("`{path}` is not a string"))
}

/// The base manifests (deploy/k8s/base/*.yaml), by kind; each kind must appear once.
fn k8s() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for f in k8s_files() {
        for doc in yaml_docs(&format!("deploy/k8s/base/{f}")) {
            if let Some(kind) = doc.get("kind").and_then(Value::as_str) {
                assert!(
                    out.insert(kind.to_string(), doc.clone()).is_none(),
                    "two {kind}s in deploy/k8s/base"
                );
            }
        }
    }
    out
}

fn yaml_files(dir: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(repo().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    files.sort();
    files
}

fn k8s_files() -> Vec<String> {
    yaml_files("deploy/k8s/base")
}

/// The regions with an overlay: the directories of deploy/k8s/overlays.
fn overlay_regions() -> BTreeSet<String> {
    std::fs::read_dir(repo().join("deploy/k8s/overlays"))
        .expect("deploy/k8s/overlays")
        .map(|e| e.expect("entry"))
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Every object of a region's overlay, as `kubectl kustomize` renders it (once per region).
fn rendered(region: &str) -> &'static [Value] {
    static RENDERED: OnceLock<BTreeMap<String, Vec<Value>>> = OnceLock::new();
    let all = RENDERED.get_or_init(|| {
        overlay_regions()
            .into_iter()
            .map(|r| {
                let dir = repo().join("deploy/k8s/overlays").join(&r);
                let out = Command::new("kubectl")
                    .arg("kustomize")
                    .arg(&dir)
                    .output()
                    .unwrap_or_else(|e| {
                        panic!("running `kubectl kustomize` (kubectl renders the overlays): {e}")
                    });
                assert!(
                    out.status.success(),
                    "kubectl kustomize {}: {}",
                    dir.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
                let text = String::from_utf8(out.stdout).expect("UTF-8");
                let docs = serde_yaml::Deserializer::from_str(&text)
                    .map(|d| Value::deserialize(d).expect("rendered YAML"))
                    .filter(|v| !v.is_null())
                    .collect();
                (r, docs)
            })
            .collect()
    });
    all.get(region)
        .unwrap_or_else(|| panic!("no overlay for {region}"))
}

/// The one object of `kind` whose name starts with `name`.
fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| s(o, "kind") == kind && s(o, "metadata.name").starts_with(name))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "want one {kind} {name}*, got {}",
        found.len()
    );
    found[0]
}

/// The label or annotation `key` of an object (keys with dots cannot go through `at`).
fn meta<'a>(v: &'a Value, field: &str, key: &str) -> Option<&'a str> {
    at(v, "metadata")
        .get(field)
        .and_then(|m| m.get(key))
        .and_then(Value::as_str)
}

fn container(k: &BTreeMap<String, Value>) -> &Value {
    let cs = at(&k["Deployment"], "spec.template.spec.containers")
        .as_sequence()
        .expect("containers");
    assert_eq!(cs.len(), 1, "one container");
    &cs[0]
}

fn args(c: &Value) -> Vec<&str> {
    at(c, "args")
        .as_sequence()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg"))
        .collect()
}

fn flag<'a>(args: &[&'a str], name: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| *a == name)
        .unwrap_or_else(|| panic!("no {name} in {args:?}"));
    args.get(i + 1).expect("flag value")
}

#[test]
fn three_replicas_probe_the_real_endpoints_on_the_metrics_port() {
    let k = k8s();
    let d = &k["Deployment"];
    assert_eq!(at(d, "spec.replicas").as_u64(), Some(3));
    let c = container(&k);
    let a = args(c);
    assert_eq!(&a[..3], ["run", "--backend", "aws"]);

    // The port the controller listens on is the container port named metrics.
    let listen = flag(&a, "--listen");
    let port: u64 = listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("--listen HOST:PORT");
    assert!(
        listen.starts_with("0.0.0.0:"),
        "probes reach the pod's IP: listen on all interfaces, not {listen}"
    );
    let ports = at(c, "ports").as_sequence().expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(s(&ports[0], "name"), "metrics");
    assert_eq!(at(&ports[0], "containerPort").as_u64(), Some(port));
    assert_eq!(port, 9464);

    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(s(c, &format!("{probe}.httpGet.path")), path);
        assert_eq!(s(c, &format!("{probe}.httpGet.port")), "metrics");
    }

    // The metrics Service and the ServiceMonitor use the same named port.
    let svc = &k["Service"];
    let sp = &at(svc, "spec.ports").as_sequence().expect("ports")[0];
    assert_eq!(s(sp, "targetPort"), "metrics");
    assert_eq!(s(sp, "name"), "metrics");
    let sm = &yaml_docs("deploy/k8s/monitoring/servicemonitor.yaml")[0];
    assert_eq!(s(&at(sm, "spec.endpoints")[0], "port"), "metrics");
    assert_eq!(s(&at(sm, "spec.endpoints")[0], "path"), "/metrics");
    assert!(
        at(sm, "spec.podTargetLabels")
            .as_sequence()
            .expect("podTargetLabels")
            .contains(&Value::from("region")),
        "alerts group per-replica metrics by the region target label"
    );
}

/// Whether a NetworkPolicy rule allows TCP `port`.
fn allows_port(rule: &Value, port: u64) -> bool {
    rule.get("ports")
        .and_then(Value::as_sequence)
        .is_some_and(|ps| {
            ps.iter().any(|p| {
                p.get("port").and_then(Value::as_u64) == Some(port)
                    && p.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == "TCP"
            })
        })
}

/// Whether a NetworkPolicy rule's peers (`from` or `to`) include the pods labelled `labels`
/// (no peers: every peer).
fn reaches_pods(rule: &Value, peers: &str, labels: &Value) -> bool {
    match rule.get(peers).and_then(Value::as_sequence) {
        None => true,
        Some(ps) => ps.iter().any(|p| {
            p.get("podSelector")
                .and_then(|sel| sel.get("matchLabels"))
                .is_some_and(|m| m == labels)
                && p.get("namespaceSelector").is_none()
        }),
    }
}

#[test]
fn replicas_advertise_their_pod_ip_and_may_reach_each_others_lease_watch() {
    let k = k8s();
    let c = container(&k);
    let env = at(c, "env").as_sequence().expect("env");
    let pod_ip = env
        .iter()
        .find(|e| s(e, "name") == "POD_IP")
        .expect("POD_IP is set: the lease names it for the standbys' watch");
    assert_eq!(s(pod_ip, "valueFrom.fieldRef.fieldPath"), "status.podIP");
    assert!(
        !args(c).contains(&"--advertise-addr"),
        "the address comes from POD_IP, with the port --listen binds"
    );
    let labels = at(&k["Deployment"], "spec.template.metadata.labels");
    let np = &k["NetworkPolicy"];
    assert_eq!(at(np, "spec.podSelector.matchLabels"), labels);
    let rules = |dir: &str| {
        at(np, &format!("spec.{dir}"))
            .as_sequence()
            .expect(dir)
            .clone()
    };
    assert!(
        rules("ingress")
            .iter()
            .any(|r| allows_port(r, 9464) && reaches_pods(r, "from", labels)),
        "the replicas may connect to each other's port 9464"
    );
    assert!(
        rules("egress")
            .iter()
            .any(|r| allows_port(r, 9464) && reaches_pods(r, "to", labels)),
        "a standby may connect to the leader's port 9464"
    );
    // Nothing else is opened on the way out: DNS, HTTPS, and the replicas' port.
    for r in rules("egress") {
        if allows_port(&r, 9464) {
            assert!(
                r.get("to").is_some(),
                "port 9464 is open to the replicas only, not to every address"
            );
        }
    }
}

#[test]
fn the_service_account_assumes_the_terraform_role_through_irsa() {
    let k = k8s();
    let sa = &k["ServiceAccount"];
    // The annotation's key has dots: read it from the map, not through `at`.
    let ann = at(sa, "metadata.annotations");
    let arn = ann
        .get("eks.amazonaws.com/role-arn")
        .and_then(Value::as_str)
        .expect("the IRSA annotation eks.amazonaws.com/role-arn");
    let (_, role) = arn
        .split_once(":role/")
        .expect("an IAM role ARN (arn:aws:iam::<account>:role/<name>)");
    assert!(arn.starts_with("arn:aws:iam::"), "{arn}");
    assert!(
        role.ends_with("-autoscaler"),
        "the autoscaler-iam module names its role <name_prefix>-autoscaler, not {role}"
    );

    // The Deployment runs as this service account, which is the one the role trusts.
    let d = &k["Deployment"];
    assert_eq!(
        s(d, "spec.template.spec.serviceAccountName"),
        s(sa, "metadata.name")
    );
    let iam = hcl::parse(&read(
        "deploy/terraform/modules/autoscaler-iam/variables.tf",
    ))
    .expect("variables.tf parses");
    let trusted = iam
        .blocks()
        .find(|b| {
            b.identifier() == "variable"
                && b.labels().first().map(|l| l.as_str()) == Some("service_account")
        })
        .and_then(|b| b.body().attributes().find(|a| a.key() == "default"))
        .map(|a| a.expr().to_string())
        .expect("variable service_account has a default");
    for (key, value) in [
        ("namespace", s(sa, "metadata.namespace")),
        ("name", s(sa, "metadata.name")),
    ] {
        assert!(
            trusted.contains(&format!("{key} = \"{value}\"")),
            "the role trusts another service account ({trusted}) than deploy/k8s runs as"
        );
    }
}

#[test]
fn the_pod_runs_as_non_root_on_a_read_only_root_without_capabilities() {
    let k = k8s();
    let pod = at(&k["Deployment"], "spec.template.spec");
    assert_eq!(
        at(pod, "securityContext.runAsNonRoot").as_bool(),
        Some(true)
    );
    let uid = at(pod, "securityContext.runAsUser")
        .as_u64()
        .expect("runAsUser");
    assert_ne!(uid, 0);
    let c = container(&k);
    let sc = at(c, "securityContext");
    assert_eq!(at(sc, "runAsNonRoot").as_bool(), Some(true));
    assert_eq!(at(sc, "readOnlyRootFilesystem").as_bool(), Some(true));
    assert_eq!(at(sc, "allowPrivilegeEscalation").as_bool(), Some(false));
    assert_eq!(
        at(sc, "capabilities.drop").as_sequence().expect("drop"),
        &vec![Value::from("ALL")]
    );
    assert_eq!(
        at(pod, "automountServiceAccountToken").as_bool(),
        Some(false)
    );

    // The image's own user is the same non-root uid.
    let dockerfile = read("deploy/docker/Dockerfile");
    assert!(
        dockerfile
            .lines()
            .any(|l| l.trim() == format!("USER {uid}:{uid}")),
        "the Dockerfile's USER is not {uid}:{uid}"
    );
}

/// "128Mi" → bytes.
fn quantity(q: &str) -> u64 {
    let (n, mult) = [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)]
        .iter()
        .find_map(|(suf, m)| q.strip_suffix(suf).map(|n| (n, *m)))
        .unwrap_or((q, 1));
    n.parse::<u64>().expect("a whole quantity") * mult
}

#[test]
fn resources_are_small_and_bounded_and_replicas_spread() {
    let k = k8s();
    let c = container(&k);
    for kind in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(
                at(c, &format!("resources.{kind}")).get(r).is_some(),
                "no {kind}.{r}"
            );
        }
    }
    let request = quantity(s(c, "resources.requests.memory"));
    let limit = quantity(s(c, "resources.limits.memory"));
    // The controller idles under 30 MiB: request above that, limit with room for bursts.
    assert!(request >= 30 << 20 && request <= limit && limit <= 256 << 20);

    let pod = at(&k["Deployment"], "spec.template.spec");
    let spread = at(pod, "topologySpreadConstraints")
        .as_sequence()
        .expect("topologySpreadConstraints");
    assert!(
        spread
            .iter()
            .any(|t| s(t, "topologyKey") == "topology.kubernetes.io/zone")
    );
    let pod_labels = at(&k["Deployment"], "spec.template.metadata.labels");
    let pdb = &k["PodDisruptionBudget"];
    assert_eq!(at(pdb, "spec.maxUnavailable").as_u64(), Some(1));
    for (key, v) in at(pdb, "spec.selector.matchLabels")
        .as_mapping()
        .expect("matchLabels")
    {
        assert_eq!(pod_labels.get(key), Some(v), "the PDB selects other pods");
    }
}

#[test]
fn the_policies_configmap_is_the_policies_directory() {
    let k = k8s();
    let cm = k
        .values()
        .find(|v| {
            s(v, "kind") == "ConfigMap" && s(v, "metadata.name") == "mrgc-autoscaler-policies"
        })
        .expect("the policies ConfigMap");
    let data: BTreeMap<String, String> = at(cm, "data")
        .as_mapping()
        .expect("data")
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().expect("key").to_string(),
                v.as_str().expect("value").to_string(),
            )
        })
        .collect();
    let mut want = BTreeMap::new();
    for e in std::fs::read_dir(repo().join("policies")).expect("policies/") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "toml") {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            want.insert(name, std::fs::read_to_string(&p).expect("policy file"));
        }
    }
    assert!(!want.is_empty());
    let names = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<BTreeSet<_>>();
    let stale: Vec<&String> = want
        .iter()
        .filter(|(name, text)| data.get(*name) != Some(*text))
        .map(|(name, _)| name)
        .collect();
    assert!(
        names(&data) == names(&want) && stale.is_empty(),
        "deploy/k8s/base/policies-configmap.yaml differs from policies/ (files {:?} vs {:?}, \
         out of date: {stale:?}): run scripts/k8s-policies",
        names(&data),
        names(&want)
    );

    // Mounted as a directory (no subPath, so edits reach the files) where --policies points.
    let d = &k["Deployment"];
    let c = container(&k);
    let dir = flag(&args(c), "--policies");
    let mounts = at(c, "volumeMounts").as_sequence().expect("volumeMounts");
    let m = mounts
        .iter()
        .find(|m| s(m, "mountPath") == dir)
        .expect("a volume mounted at --policies");
    assert!(m.get("subPath").is_none());
    let vols = at(d, "spec.template.spec.volumes")
        .as_sequence()
        .expect("volumes");
    let v = vols
        .iter()
        .find(|v| s(v, "name") == s(m, "name"))
        .expect("the mounted volume");
    assert_eq!(s(v, "configMap.name"), "mrgc-autoscaler-policies");
}

/// The settings ConfigMap's literals of a kustomization's generator.
fn settings(k: &Value) -> BTreeMap<String, String> {
    let gens = at(k, "configMapGenerator")
        .as_sequence()
        .expect("generators");
    let g = gens
        .iter()
        .find(|g| s(g, "name") == "mrgc-autoscaler-settings")
        .expect("the settings generator");
    at(g, "literals")
        .as_sequence()
        .expect("literals")
        .iter()
        .map(|l| {
            let (k, v) = l.as_str().expect("literal").split_once('=').expect("K=V");
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn the_base_applies_every_manifest_and_sets_no_region() {
    let base = &yaml_docs("deploy/k8s/base/kustomization.yaml")[0];
    let listed: BTreeSet<String> = at(base, "resources")
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("path").to_string())
        .collect();
    assert_eq!(listed, k8s_files().into_iter().collect::<BTreeSet<_>>());
    let b = settings(base);
    assert!(b.contains_key("MRGC_TABLE_PREFIX"));
    assert!(
        !b.contains_key("MRGC_REGION") && !b.contains_key("AWS_REGION"),
        "the region belongs to the overlays, not the base"
    );
    assert!(
        base.get("labels").is_none(),
        "the base labels no region: the overlays do"
    );

    let monitoring = &yaml_docs("deploy/k8s/monitoring/kustomization.yaml")[0];
    assert_eq!(s(monitoring, "kind"), "Component");
    let listed: BTreeSet<String> = at(monitoring, "resources")
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("path").to_string())
        .collect();
    assert_eq!(
        listed,
        yaml_files("deploy/k8s/monitoring")
            .into_iter()
            .collect::<BTreeSet<_>>()
    );
}

#[test]
fn every_region_has_an_overlay_that_renders_with_its_settings() {
    let regions = overlay_regions();
    assert_eq!(
        regions,
        ["us-east-1", "us-east-2", "us-west-2"]
            .map(String::from)
            .into(),
        "one overlay per region of the Terraform example"
    );
    for r in &regions {
        let objs = rendered(r);
        // The settings, merged from the base's and the overlay's literals, under a hashed name.
        let cm = object(objs, "ConfigMap", "mrgc-autoscaler-settings-");
        let data = at(cm, "data");
        assert_eq!(s(data, "MRGC_REGION"), r);
        assert_eq!(s(data, "AWS_REGION"), r);
        assert_eq!(s(data, "MRGC_TABLE_PREFIX"), "mrgc-prod");

        // The Deployment reads those settings, and its pods carry the region label.
        let d = object(objs, "Deployment", "mrgc-autoscaler");
        let c = &at(d, "spec.template.spec.containers")
            .as_sequence()
            .expect("containers")[0];
        let from = at(c, "envFrom").as_sequence().expect("envFrom");
        assert_eq!(
            s(&from[0], "configMapRef.name"),
            s(cm, "metadata.name"),
            "{r}: the Deployment reads another settings ConfigMap"
        );
        assert_eq!(s(d, "spec.template.metadata.labels.region"), r);
        assert!(
            at(d, "spec.selector.matchLabels").get("region").is_none(),
            "{r}: the selector must not change with the label (it is immutable)"
        );
        for o in objs {
            let ns = at(o, "metadata").get("namespace").and_then(Value::as_str);
            if s(o, "kind") == "Namespace" {
                assert_eq!(s(o, "metadata.name"), "mrgc-autoscaler");
            } else {
                assert_eq!(ns, Some("mrgc-autoscaler"), "{r}: {}", s(o, "kind"));
            }
        }

        // The monitoring component is in every region.
        let sm = object(objs, "ServiceMonitor", "mrgc-autoscaler");
        assert_eq!(s(sm, "apiVersion"), "monitoring.coreos.com/v1");
        let dash = object(objs, "ConfigMap", "mrgc-autoscaler-dashboard");
        assert_eq!(meta(dash, "labels", "grafana_dashboard"), Some("1"));
        assert_eq!(
            at(dash, "data")
                .get("mrgc-autoscaler.json")
                .and_then(Value::as_str),
            Some(read("deploy/grafana/mrgc-autoscaler.json").as_str()),
            "{r}: the dashboard ConfigMap differs from deploy/grafana/mrgc-autoscaler.json: run scripts/k8s-monitoring"
        );

        // The alert rules: alerts.yaml as it is, but MrgcAutoscalerAbsent narrowed to the region.
        let rule = object(objs, "PrometheusRule", "mrgc-autoscaler");
        let mut want = rule_file();
        let absent = rule_mut(&mut want, "MrgcAutoscalerAbsent");
        absent["expr"] = Value::from(format!("absent(mrgc_autoscaler_leader{{region=\"{r}\"}})"));
        assert_eq!(
            at(rule, "spec"),
            &want,
            "{r}: the PrometheusRule is not alerts.yaml with MrgcAutoscalerAbsent for {r} alone"
        );
    }
}

/// deploy/prometheus/alerts.yaml, parsed.
fn rule_file() -> Value {
    yaml_docs("deploy/prometheus/alerts.yaml").remove(0)
}

fn rules(doc: &Value) -> Vec<&Value> {
    at(doc, "groups")
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| at(g, "rules").as_sequence().expect("rules"))
        .collect()
}

fn rule_mut<'a>(doc: &'a mut Value, alert: &str) -> &'a mut Value {
    doc["groups"]
        .as_sequence_mut()
        .expect("groups")
        .iter_mut()
        .flat_map(|g| g["rules"].as_sequence_mut().expect("rules").iter_mut())
        .find(|r| r.get("alert").and_then(Value::as_str) == Some(alert))
        .unwrap_or_else(|| panic!("no alert {alert}"))
}

#[test]
fn the_monitoring_component_is_generated_from_the_rule_file_and_the_dashboard() {
    let pr = &yaml_docs("deploy/k8s/monitoring/prometheusrule.yaml")[0];
    assert_eq!(s(pr, "kind"), "PrometheusRule");
    assert_eq!(
        at(pr, "spec"),
        &rule_file(),
        "deploy/k8s/monitoring/prometheusrule.yaml differs from deploy/prometheus/alerts.yaml: run scripts/k8s-monitoring"
    );
    let cm = &yaml_docs("deploy/k8s/monitoring/grafana-dashboard.yaml")[0];
    assert_eq!(
        at(cm, "data")
            .get("mrgc-autoscaler.json")
            .and_then(Value::as_str),
        Some(read("deploy/grafana/mrgc-autoscaler.json").as_str()),
        "deploy/k8s/monitoring/grafana-dashboard.yaml differs from deploy/grafana/mrgc-autoscaler.json: run scripts/k8s-monitoring"
    );
}

/// The regions of MrgcAutoscalerAbsent's static list: `absent(...{region="R"})` terms.
fn absent_regions(expr: &str) -> BTreeSet<String> {
    expr.split("absent(mrgc_autoscaler_leader{region=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().expect("a region").to_string())
        .collect()
}

#[test]
fn the_absent_alert_lists_every_region_with_an_overlay() {
    let doc = rule_file();
    let absent = rules(&doc)
        .into_iter()
        .find(|r| s(r, "alert") == "MrgcAutoscalerAbsent")
        .expect("MrgcAutoscalerAbsent");
    let expr = s(absent, "expr");
    let listed = absent_regions(expr);
    assert_eq!(
        listed,
        overlay_regions(),
        "MrgcAutoscalerAbsent's region list differs from deploy/k8s/overlays"
    );
    // absent() per region, joined by `or`, nothing that looks back in time (a lookback clears
    // the alert once the region has been silent longer than it).
    let terms: Vec<&str> = expr.split(" or ").map(str::trim).collect();
    assert_eq!(terms.len(), listed.len(), "{expr}");
    for t in terms {
        assert!(t.starts_with("absent(") && t.ends_with("\"})"), "{t}");
    }
    assert!(
        !expr.contains("offset") && !expr.contains("_over_time"),
        "{expr}"
    );
}
#[test]
fn the_image_builds_locked_and_exposes_the_metrics_port() {
    let d = read("deploy/docker/Dockerfile");
    assert!(d.contains("cargo build --release --locked"));
    assert!(d.lines().any(|l| l.trim() == "EXPOSE 9464"));
    let stages = d.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "a multi-stage build");
    assert!(d.contains("MRGC_LISTEN=0.0.0.0:9464"));

    // Everything the build reads is in the context and copied: the build script, and every
    // file the sources compile in (include_str!).
    let ignore = read("deploy/docker/Dockerfile.dockerignore");
    let mut needed = vec!["build.rs".to_string()];
    let mut dirs = vec![repo().join("src")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            for part in text.split("include_str!(\"").skip(1) {
                let rel = part.split('"').next().unwrap();
                let abs = p.parent().unwrap().join(rel);
                let abs = abs
                    .canonicalize()
                    .unwrap_or_else(|e| panic!("{}: {e}", abs.display()));
                let under = abs.strip_prefix(repo().canonicalize().unwrap()).unwrap();
                if !under.starts_with("src") {
                    needed.push(under.display().to_string());
                }
            }
        }
    }
    for f in needed {
        assert!(
            d.lines().any(|l| l.starts_with("COPY ") && l.contains(&f)),
            "the Dockerfile does not copy {f}, which the build reads"
        );
        assert!(
            ignore.lines().any(|l| l.trim() == format!("!{f}")),
            "deploy/docker/Dockerfile.dockerignore keeps {f} out of the build context"
        );
    }
}

#[test]
fn the_systemd_unit_is_hardened() {
    let unit = read("deploy/systemd/mrgc-autoscaler.service");
    let set: BTreeSet<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .collect();
    for want in [
        "ExecStart=/usr/bin/mrgc-autoscaler run --backend aws",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        "Restart=on-failure",
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "EnvironmentFile=/etc/mrgc-autoscaler/env",
    ] {
        assert!(set.contains(want), "the unit lacks `{want}`");
    }
    assert!(set.iter().any(|l| l.starts_with("MemoryMax=")));
}

/// The controller's exit codes for configuration errors: 64 (EX_USAGE: a bad flag, env value,
/// policy or scenario file) and 78 (EX_CONFIG: the environment does not match, e.g. tables
/// missing or different, no pool for the region, cannot listen). Restarting cannot fix either.
const CONFIG_EXIT_CODES: [u64; 2] = [64, 78];

#[test]
fn the_unit_does_not_restart_on_configuration_errors() {
    let unit = read("deploy/systemd/mrgc-autoscaler.service");
    let lines: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("RestartPreventExitStatus="))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one RestartPreventExitStatus= line: {lines:?}"
    );
    let codes: Vec<u64> = lines[0]
        .trim_start_matches("RestartPreventExitStatus=")
        .split_whitespace()
        .map(|c| {
            c.parse()
                .unwrap_or_else(|_| panic!("exit status {c} is not a number"))
        })
        .collect();
    assert_eq!(
        codes, CONFIG_EXIT_CODES,
        "RestartPreventExitStatus must list exactly 64 and 78"
    );

    // Kubernetes restarts a Deployment's pods whatever the exit code: the reason must at least
    // reach the pod's status, and the runbook must say what 64 and 78 mean.
    let k = k8s();
    assert_eq!(
        s(container(&k), "terminationMessagePolicy"),
        "FallbackToLogsOnError"
    );
    let runbook = read("deploy/RUNBOOK.md");
    for code in CONFIG_EXIT_CODES {
        assert!(
            runbook.contains(&format!("| {code} (EX_")),
            "deploy/RUNBOOK.md does not explain exit {code}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// PromQL: alert rules and the dashboard.

struct Names(Vec<String>);

impl ExprVisitor for Names {
    type Error = String;
    fn pre_visit(&mut self, e: &Expr) -> Result<bool, String> {
        let vs = match e {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(ms) => &ms.vs,
            _ => return Ok(true),
        };
        match &vs.name {
            Some(n) => self.0.push(n.clone()),
            None => return Err(format!("a selector without a metric name: {vs}")),
        }
        Ok(true)
    }
}

/// The metric names a PromQL expression selects; an error if it does not parse.
fn metric_names(expr: &str) -> Result<Vec<String>, String> {
    let ast = promql_parser::parser::parse(expr).map_err(|e| format!("`{expr}`: {e}"))?;
    let mut names = Names(Vec::new());
    walk_expr(&mut names, &ast)?;
    Ok(names.0)
}

/// Every name a Prometheus server can hold for the controller's metrics (histograms add
/// `_bucket`, `_sum` and `_count` series).
fn exported() -> BTreeSet<String> {
    let m = Metrics::new("us-east-1");
    let mut out: BTreeSet<String> = BTreeSet::new();
    for n in m.names() {
        out.insert(n.clone());
        for suffix in ["_bucket", "_sum", "_count"] {
            out.insert(format!("{n}{suffix}"));
        }
    }
    out
}

fn check_expr(expr: &str, exported: &BTreeSet<String>) -> Result<Vec<String>, String> {
    let names = metric_names(expr)?;
    if names.is_empty() {
        return Err(format!("`{expr}` selects no metric"));
    }
    for n in &names {
        if !exported.contains(n) {
            return Err(format!(
                "`{expr}` uses {n}, which the controller does not export"
            ));
        }
    }
    Ok(names)
}

#[test]
fn the_metric_check_catches_unknown_and_broken_expressions() {
    let ex = exported();
    assert!(check_expr("rate(mrgc_autoscaler_aws_calls_total[5m])", &ex).is_ok());
    assert!(check_expr("mrgc_autoscaler_reconcile_duration_seconds_bucket", &ex).is_ok());
    assert!(check_expr("rate(mrgc_autoscaler_aws_call_total[5m])", &ex).is_err());
    assert!(check_expr("max by (region) (mrgc_autoscaler_leader", &ex).is_err());
    assert!(check_expr("{__name__=~\"mrgc_.*\"}", &ex).is_err());
    assert!(check_expr("vector(1)", &ex).is_err());
}

fn runbook_anchors() -> BTreeSet<String> {
    read("deploy/RUNBOOK.md")
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            // GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens.
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

#[test]
fn every_alert_names_exported_metrics_and_links_its_runbook_section() {
    let ex = exported();
    let anchors = runbook_anchors();
    let doc = &yaml_docs("deploy/prometheus/alerts.yaml")[0];
    let mut alerts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut bases = BTreeSet::new();
    for g in at(doc, "groups").as_sequence().expect("groups") {
        for r in at(g, "rules").as_sequence().expect("rules") {
            let name = s(r, "alert").to_string();
            let expr = s(r, "expr");
            let names = check_expr(expr, &ex).unwrap_or_else(|e| panic!("alert {name}: {e}"));
            assert!(
                ["critical", "warning", "info"].contains(&s(r, "labels.severity")),
                "alert {name}: severity"
            );
            for a in ["summary", "description", "runbook_url"] {
                assert!(
                    !s(r, &format!("annotations.{a}")).is_empty(),
                    "alert {name}: no {a}"
                );
            }
            // An absolute link to a section of the published runbook, not a repository path.
            let url = s(r, "annotations.runbook_url");
            let (base, anchor) = url.split_once('#').expect("runbook_url has an #anchor");
            assert!(
                base.starts_with("https://") && base.ends_with("/RUNBOOK.md"),
                "alert {name}: runbook_url {url} is not an absolute link to RUNBOOK.md"
            );
            assert!(
                anchors.contains(anchor),
                "alert {name} links #{anchor}, which deploy/RUNBOOK.md has no heading for"
            );
            bases.insert(base.to_string());
            alerts.insert(name, names);
        }
    }
    // One base for every alert (scripts/k8s-monitoring --runbook-base changes it), and the
    // runbook says where it is.
    assert_eq!(
        bases.len(),
        1,
        "the runbook_urls use several bases: {bases:?}"
    );
    let base = bases.first().expect("a base");
    assert!(
        read("deploy/RUNBOOK.md").contains(base.as_str()),
        "deploy/RUNBOOK.md does not document the runbook base {base}"
    );
    // What the issue asks for, by the metric each rests on.
    for (alert, metric) in [
        ("MrgcAutoscalerNoLeader", "mrgc_autoscaler_leader"),
        (
            "MrgcAutoscalerDecisionsFailing",
            "mrgc_autoscaler_decision_results_total",
        ),
        (
            "MrgcAutoscalerMetricsStale",
            "mrgc_autoscaler_metrics_age_seconds",
        ),
        (
            "MrgcAutoscalerPolicyReloadRejected",
            "mrgc_autoscaler_policy_reloads_total",
        ),
        (
            "MrgcAutoscalerAwsThrottled",
            "mrgc_autoscaler_aws_throttles_total",
        ),
        (
            "MrgcAutoscalerReconcileErrors",
            "mrgc_autoscaler_reconcile_errors_total",
        ),
        (
            "MrgcAutoscalerReconcileSlow",
            "mrgc_autoscaler_reconcile_duration_seconds_bucket",
        ),
        ("MrgcAutoscalerAbsent", "mrgc_autoscaler_leader"),
        (
            "MrgcAutoscalerDrainsFailing",
            "mrgc_autoscaler_drains_total",
        ),
        ("MrgcAutoscalerPoolAtMax", "mrgc_autoscaler_pool_desired"),
        ("MrgcAutoscalerPoolAtMax", "mrgc_autoscaler_pool_max"),
        (
            "MrgcAutoscalerShadowPolicyReloadRejected",
            "mrgc_autoscaler_shadow_policy_reloads_total",
        ),
        ("MrgcAutoscalerVersionSkew", "mrgc_autoscaler_build_info"),
    ] {
        let names = alerts
            .get(alert)
            .unwrap_or_else(|| panic!("no alert {alert}"));
        assert!(
            names.iter().any(|n| n == metric),
            "{alert} does not use {metric}"
        );
    }
    // The leader gauge is per replica: "no leader" is the max over a region's replicas.
    let no_leader = at(doc, "groups")
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| at(g, "rules").as_sequence().expect("rules"))
        .find(|r| s(r, "alert") == "MrgcAutoscalerNoLeader")
        .expect("MrgcAutoscalerNoLeader");
    assert!(s(no_leader, "expr").starts_with("max by (region)"));
    assert_eq!(s(no_leader, "for"), "1m");
}

/// The reconcile histogram's buckets, as the controller exports them.
const RECONCILE_BUCKETS: [f64; 15] = mrgc_autoscaler::telemetry::RECONCILE_BUCKETS;

#[test]
fn the_slow_reconcile_threshold_lies_inside_the_histogram() {
    let doc = rule_file();
    let slow = rules(&doc)
        .into_iter()
        .find(|r| s(r, "alert") == "MrgcAutoscalerReconcileSlow")
        .expect("MrgcAutoscalerReconcileSlow");
    let expr = s(slow, "expr");
    let threshold: f64 = expr
        .rsplit_once('>')
        .and_then(|(_, t)| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("`{expr}` does not end in `> <seconds>`"));
    let top = RECONCILE_BUCKETS[RECONCILE_BUCKETS.len() - 1];
    assert!(
        threshold < top && RECONCILE_BUCKETS.iter().any(|b| *b > threshold),
        "p99 > {threshold} cannot fire with the top finite bucket at {top}"
    );
}

/// The promtool unit tests (deploy/prometheus/tests/*.yaml): for every alert, the alertnames
/// that fire in some test and those that stay silent in some test.
fn promtool_cases() -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut fires, mut silent) = (BTreeSet::new(), BTreeSet::new());
    let files = yaml_files("deploy/prometheus/tests");
    assert!(
        !files.is_empty(),
        "no promtool tests in deploy/prometheus/tests"
    );
    for f in files {
        let doc = &yaml_docs(&format!("deploy/prometheus/tests/{f}"))[0];
        let rule_files: Vec<&str> = at(doc, "rule_files")
            .as_sequence()
            .expect("rule_files")
            .iter()
            .map(|r| r.as_str().expect("path"))
            .collect();
        assert_eq!(rule_files, ["../alerts.yaml"], "{f} tests other rules");
        for t in at(doc, "tests").as_sequence().expect("tests") {
            for case in at(t, "alert_rule_test")
                .as_sequence()
                .expect("alert_rule_test")
            {
                let name = s(case, "alertname").to_string();
                let expected = case
                    .get("exp_alerts")
                    .and_then(Value::as_sequence)
                    .cloned()
                    .unwrap_or_default();
                for a in &expected {
                    let region = at(a, "exp_labels").get("region").and_then(Value::as_str);
                    assert!(
                        region.is_some_and(|r| !r.is_empty()),
                        "{f}: {name} fires without a region label: every alert groups by region"
                    );
                }
                if expected.is_empty() {
                    silent.insert(name);
                } else {
                    fires.insert(name);
                }
            }
        }
    }
    (fires, silent)
}

#[test]
fn every_alert_has_promtool_tests_that_fire_it_and_keep_it_silent() {
    let doc = rule_file();
    let alerts: BTreeSet<String> = rules(&doc)
        .into_iter()
        .map(|r| s(r, "alert").to_string())
        .collect();
    let (fires, silent) = promtool_cases();
    let no_fire: Vec<&String> = alerts.difference(&fires).collect();
    let no_silent: Vec<&String> = alerts.difference(&silent).collect();
    assert!(
        no_fire.is_empty() && no_silent.is_empty(),
        "deploy/prometheus/tests/ lacks a test in which these alerts fire: {no_fire:?}; \
         and one in which they stay silent (a near miss): {no_silent:?}"
    );
    let unknown: Vec<&String> = fires
        .union(&silent)
        .filter(|a| !alerts.contains(*a))
        .collect();
    assert!(
        unknown.is_empty(),
        "tests of alerts that do not exist: {unknown:?}"
    );
}

/// Grafana's variables, replaced by values that parse.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$region", "x")
        .replace("$pool", "x")
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    ("definition", serde_json::Value::String(e)) => {
                        let inner = e
                            .strip_prefix("label_values(")
                            .and_then(|r| r.rsplit_once(','))
                            .map(|(sel, _)| sel.to_string())
                            .unwrap_or_else(|| panic!("unexpected variable query {e}"));
                        out.push(inner);
                    }
                    _ => collect_exprs(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_exprs(x, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_shows_only_exported_metrics() {
    let ex = exported();
    let dash: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/mrgc-autoscaler.json")).expect("dashboard JSON");
    assert_eq!(dash["uid"], "mrgc-autoscaler");
    let mut exprs = Vec::new();
    collect_exprs(&dash, &mut exprs);
    let mut used = BTreeSet::new();
    for e in &exprs {
        let names =
            check_expr(&substitute(e), &ex).unwrap_or_else(|err| panic!("dashboard: {err}"));
        used.extend(names);
    }
    for metric in [
        "mrgc_autoscaler_pool_rps",
        "mrgc_autoscaler_pool_serving",
        "mrgc_autoscaler_pool_launching",
        "mrgc_autoscaler_pool_desired",
        "mrgc_autoscaler_pool_utilisation",
        "mrgc_autoscaler_decisions_total",
        "mrgc_autoscaler_leader",
        "mrgc_autoscaler_leader_epoch",
        "mrgc_autoscaler_aws_calls_total",
        "mrgc_autoscaler_aws_errors_total",
        "mrgc_autoscaler_aws_throttles_total",
        "mrgc_autoscaler_reconcile_duration_seconds_bucket",
        "mrgc_autoscaler_bad_items_total",
        "mrgc_autoscaler_drains_total",
        "mrgc_autoscaler_pool_draining",
        "mrgc_autoscaler_shadow_pool_desired",
        "mrgc_autoscaler_launch_time_p90_seconds",
        "mrgc_autoscaler_model_load_time_p90_seconds",
        "mrgc_autoscaler_pool_max",
        "mrgc_autoscaler_pool_min",
        "mrgc_autoscaler_build_info",
    ] {
        assert!(
            used.contains(metric),
            "the dashboard does not show {metric}"
        );
    }
    // Every panel has a unique id and a query.
    let panels = dash["panels"].as_array().expect("panels");
    let ids: BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids must be unique");
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert!(
            p["targets"].as_array().is_some_and(|t| !t.is_empty()),
            "panel {} has no query",
            p["title"]
        );
    }
}
