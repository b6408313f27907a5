use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::config::{BackendPins, PostgresPins};

/// PostgreSQL discovered in release `kleidia-data`, namespace
/// `kleidia`, without chart values.
fn postgres_in_data(
    objs: &[ManifestObject],
    pods: &[PodInfo],
    pins: &PostgresPins,
) -> Result<PostgresTarget, TopologyError> {
    discover_postgres("kleidia-data", objs, &Value::Null, pods, "kleidia", pins)
}

fn pod(name: &str, labels: &[(&str, &str)], ready: bool) -> PodInfo {
    PodInfo {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ready,
        phase: "Running".into(),
        containers: vec![],
        ..Default::default()
    }
}

const DEMO_DATA: &str = r#"---
# Source: kleidia-data/templates/secret.yaml
apiVersion: v1
kind: Secret
metadata:
  name: kleidia-data-postgres-secret
---
# Source: kleidia-data/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: kleidia-data-postgres-cluster
spec:
  selector:
    app: postgres-cluster
  ports:
  - port: 5432
---
# Source: kleidia-data/templates/statefulset.yaml
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: kleidia-data-postgres-cluster
spec:
  serviceName: kleidia-data-postgres-cluster
  selector:
    matchLabels:
      app: postgres-cluster
  template:
    metadata:
      labels:
        app: postgres-cluster
    spec:
      containers:
      - name: postgres
        image: postgres:15-alpine
        env:
        - name: POSTGRES_USER
          value: yubiuser
        - name: POSTGRES_DB
          value: kleidia
        - name: POSTGRES_PASSWORD
          valueFrom:
            secretKeyRef: {name: kleidia-data-postgres-secret, key: password}
        ports:
        - containerPort: 5432
          name: postgres
      - name: metrics
        image: quay.io/prometheuscommunity/postgres-exporter:v0.15.0
"#;

#[test]
fn demo_data_chart() {
    let objs = parse_manifest("kleidia-data", DEMO_DATA).unwrap();
    assert_eq!(objs.len(), 3);
    let pods = vec![
        pod(
            "kleidia-data-postgres-cluster-1",
            &[("app", "postgres-cluster")],
            true,
        ),
        pod(
            "kleidia-data-postgres-cluster-0",
            &[("app", "postgres-cluster")],
            true,
        ),
        pod("other-0", &[("app", "other")], true),
    ];
    let t = postgres_in_data(&objs, &pods, &Default::default()).unwrap();
    assert_eq!(
        t,
        PostgresTarget {
            workload: "StatefulSet kleidia-data-postgres-cluster".into(),
            pod: "kleidia-data-postgres-cluster-0".into(),
            container: "postgres".into(),
            user: "yubiuser".into(),
            database: "kleidia".into(),
        }
    );
}

#[test]
fn differently_named_statefulset_with_user_from_values() {
    let manifest = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: postgres}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: postgres}}
  template:
    metadata: {labels: {app.kubernetes.io/name: postgres}}
    spec:
      containers:
      - name: db
        image: docker.io/library/postgres:16
        env:
        - name: POSTGRES_USER
          valueFrom: {secretKeyRef: {name: pg, key: user}}
"#;
    let objs = parse_manifest("kleidia-data", manifest).unwrap();
    let values = json!({"image": {"tag": "16"}, "postgres": {"auth": {"username": "kleidiauser", "database": "kleidia"}}});
    let pods = vec![pod(
        "postgres-0",
        &[("app.kubernetes.io/name", "postgres")],
        true,
    )];
    let t = discover_postgres(
        "kleidia-data",
        &objs,
        &values,
        &pods,
        "kleidia",
        &Default::default(),
    )
    .unwrap();
    assert_eq!(t.pod, "postgres-0");
    assert_eq!(t.container, "db");
    assert_eq!(t.user, "kleidiauser");
    assert_eq!(t.database, "kleidia");
}

#[test]
fn literal_env_user_kleidiauser() {
    let manifest = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: postgres}
spec:
  selector: {matchLabels: {app: postgres}}
  template:
    metadata: {labels: {app: postgres}}
    spec:
      containers:
      - name: postgres
        image: postgres:16
        env: [{name: PGUSER, value: kleidiauser}, {name: PGDATABASE, value: kleidia}]
"#;
    let objs = parse_manifest("d", manifest).unwrap();
    let pods = vec![pod("postgres-0", &[("app", "postgres")], false)];
    let t = discover_postgres("d", &objs, &Value::Null, &pods, "ns", &Default::default()).unwrap();
    assert_eq!(
        (t.user.as_str(), t.database.as_str()),
        ("kleidiauser", "kleidia")
    );
}

#[test]
fn cloudnative_pg_cluster_uses_the_primary() {
    let manifest = r#"
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata: {name: kleidia-db}
spec:
  instances: 3
  imageName: ghcr.io/cloudnative-pg/postgresql:16.4
  bootstrap: {initdb: {database: kleidia, owner: kleidiauser}}
"#;
    let objs = parse_manifest("d", manifest).unwrap();
    let pods = vec![
        pod(
            "kleidia-db-1",
            &[
                ("cnpg.io/cluster", "kleidia-db"),
                ("cnpg.io/instanceRole", "replica"),
            ],
            true,
        ),
        pod(
            "kleidia-db-2",
            &[
                ("cnpg.io/cluster", "kleidia-db"),
                ("cnpg.io/instanceRole", "primary"),
            ],
            true,
        ),
        pod(
            "kleidia-db-3",
            &[
                ("cnpg.io/cluster", "kleidia-db"),
                ("cnpg.io/instanceRole", "replica"),
            ],
            true,
        ),
    ];
    let t = discover_postgres("d", &objs, &Value::Null, &pods, "ns", &Default::default()).unwrap();
    assert_eq!(t.pod, "kleidia-db-2");
    assert_eq!(t.container, "postgres");
    assert_eq!(t.user, "postgres");
    assert_eq!(t.database, "kleidia");
    assert_eq!(t.workload, "Cluster kleidia-db");
}

#[test]
fn pins_win_over_discovery() {
    let objs = parse_manifest("kleidia-data", DEMO_DATA).unwrap();
    let pods = vec![
        pod(
            "kleidia-data-postgres-cluster-0",
            &[("app", "postgres-cluster")],
            true,
        ),
        pod("pg-replica", &[("role", "x")], true),
    ];
    let pins = PostgresPins {
        pod: None,
        selector: Some("role=x".into()),
        container: Some("c".into()),
        user: Some("admin".into()),
        database: Some("db2".into()),
    };
    let t = postgres_in_data(&objs, &pods, &pins).unwrap();
    assert_eq!(
        (
            t.pod.as_str(),
            t.container.as_str(),
            t.user.as_str(),
            t.database.as_str()
        ),
        ("pg-replica", "c", "admin", "db2")
    );
    let pins = PostgresPins {
        pod: Some("ghost-0".into()),
        ..Default::default()
    };
    let err = postgres_in_data(&objs, &pods, &pins).unwrap_err();
    assert!(err.to_string().contains("ghost-0"), "{err}");
    assert!(err.to_string().contains("postgres.pod"), "{err}");
}

#[test]
fn missing_postgres_names_what_was_found() {
    let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: web, image: nginx:1}]}\n";
    let objs = parse_manifest("kleidia-data", manifest).unwrap();
    let err = postgres_in_data(&objs, &[], &Default::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("Deployment web") && msg.contains("nginx:1"),
        "{msg}"
    );
    assert!(msg.contains("postgres.pod"), "{msg}");
}

#[test]
fn no_pods_is_reported_with_the_selector() {
    let objs = parse_manifest("kleidia-data", DEMO_DATA).unwrap();
    let err = postgres_in_data(&objs, &[], &Default::default()).unwrap_err();
    assert!(err.to_string().contains("app=postgres-cluster"), "{err}");
}

const DEMO_PLATFORM: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: kleidia-platform-openbao-agent-injector}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: openbao-agent-injector}}
  template:
    metadata: {labels: {app.kubernetes.io/name: openbao-agent-injector}}
    spec: {containers: [{name: sidecar-injector, image: "openbao/openbao-k8s:1.4"}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: kleidia-platform-openbao}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: openbao, app.kubernetes.io/instance: kleidia-platform}}
  template:
    metadata: {labels: {app.kubernetes.io/name: openbao, app.kubernetes.io/instance: kleidia-platform}}
    spec:
      containers:
      - name: openbao
        image: quay.io/openbao/openbao:2.4.1
        ports: [{containerPort: 8200, name: http}, {containerPort: 8201, name: https-internal}]
"#;

#[test]
fn demo_platform_chart() {
    let objs = parse_manifest("kleidia-platform", DEMO_PLATFORM).unwrap();
    let labels = [
        ("app.kubernetes.io/name", "openbao"),
        ("app.kubernetes.io/instance", "kleidia-platform"),
    ];
    let pods = vec![
        pod("kleidia-platform-openbao-0", &labels, false),
        pod(
            "kleidia-platform-openbao-agent-injector-abc",
            &[("app.kubernetes.io/name", "openbao-agent-injector")],
            true,
        ),
    ];
    let t = discover_openbao(
        "kleidia-platform",
        &objs,
        &pods,
        "kleidia",
        &Default::default(),
    )
    .unwrap();
    assert_eq!(
        t,
        OpenbaoTarget {
            workload: "StatefulSet kleidia-platform-openbao".into(),
            pod: "kleidia-platform-openbao-0".into(),
            container: "openbao".into(),
            port: 8200,
            tls: false,
        }
    );
}

#[test]
fn vault_image_by_label_only() {
    let manifest = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: secrets}
spec:
  selector: {matchExpressions: [{key: app.kubernetes.io/name, operator: In, values: [openbao]}]}
  template:
    metadata: {labels: {app.kubernetes.io/name: openbao}}
    spec: {containers: [{name: server, image: "registry.local/custom-bao-build:7"}]}
"#;
    let objs = parse_manifest("p", manifest).unwrap();
    let pods = vec![pod(
        "secrets-0",
        &[("app.kubernetes.io/name", "openbao")],
        true,
    )];
    let t = discover_openbao("p", &objs, &pods, "ns", &Default::default()).unwrap();
    assert_eq!(
        (t.pod.as_str(), t.container.as_str()),
        ("secrets-0", "server")
    );
}

const DEMO_SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: kleidia-services-frontend}
spec:
  selector: {app: kleidia-frontend}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: kleidia-services-backend}
spec:
  selector: {app: kleidia-backend}
  ports: [{name: metrics, port: 9090}, {name: http, port: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: kleidia-services-backend}
spec:
  selector: {matchLabels: {app: kleidia-backend}}
  template:
    metadata: {labels: {app: kleidia-backend, tier: api}}
    spec: {containers: [{name: backend, image: "kleidia/backend:1.4.0"}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: kleidia-services-frontend}
spec:
  selector: {matchLabels: {app: kleidia-frontend}}
  template:
    metadata: {labels: {app: kleidia-frontend}}
    spec: {containers: [{name: frontend, image: "kleidia/frontend:1.4.0"}]}
"#;

#[test]
fn demo_services_chart() {
    let objs = parse_manifest("kleidia-services", DEMO_SERVICES).unwrap();
    let t = discover_backend("kleidia-services", &objs, &Default::default()).unwrap();
    assert_eq!(
        t,
        BackendTarget {
            service: "kleidia-services-backend".into(),
            port: 8080
        }
    );
    let pinned = discover_backend(
        "kleidia-services",
        &objs,
        &BackendPins {
            service: Some("kleidia-services-backend".into()),
            port: Some(9090),
        },
    )
    .unwrap();
    assert_eq!(pinned.port, 9090);
}

#[test]
fn backend_service_found_by_selector_when_names_differ() {
    let manifest = r#"
apiVersion: v1
kind: Service
metadata: {name: api}
spec: {selector: {app: core}, ports: [{port: 3000}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: kleidia-backend}
spec:
  selector: {matchLabels: {app: core}}
  template:
    metadata: {labels: {app: core}}
    spec: {containers: [{name: app, image: "x/y:1"}]}
"#;
    let objs = parse_manifest("s", manifest).unwrap();
    let t = discover_backend("s", &objs, &Default::default()).unwrap();
    assert_eq!((t.service.as_str(), t.port), ("api", 3000));
    let err = discover_backend(
        "s",
        &parse_manifest("s", "kind: ConfigMap\nmetadata: {name: c}").unwrap(),
        &Default::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("backend.service"), "{err}");
}

#[test]
fn release_workloads_pair_each_workload_with_its_pods() {
    let objs = parse_manifest("kleidia-services", DEMO_SERVICES).unwrap();
    let pods = vec![
        pod(
            "kleidia-services-backend-a",
            &[("app", "kleidia-backend"), ("tier", "api")],
            true,
        ),
        pod(
            "kleidia-services-backend-b",
            &[("app", "kleidia-backend")],
            false,
        ),
        pod(
            "kleidia-services-frontend-a",
            &[("app", "kleidia-frontend")],
            true,
        ),
    ];
    let ws = release_workloads(&objs, &pods);
    assert_eq!(ws.len(), 2);
    let backend = ws
        .iter()
        .find(|w| w.workload.name == "kleidia-services-backend")
        .unwrap();
    assert_eq!(backend.pods.len(), 2);
    assert_eq!(backend.ready(), 1);
    assert_eq!(backend.pods[0].name, "kleidia-services-backend-a");
    let frontend = ws
        .iter()
        .find(|w| w.workload.name == "kleidia-services-frontend")
        .unwrap();
    assert_eq!(frontend.pods.len(), 1);
}

#[test]
fn selectors() {
    let s = Selector::parse("a=b, c=d").unwrap();
    assert!(s.matches(&[("a".into(), "b".into()), ("c".into(), "d".into())].into()));
    assert!(!s.matches(&[("a".into(), "b".into())].into()));
    assert!(Selector::parse("novalue").is_none());
    assert!(!Selector::default().matches(&BTreeMap::new()));
    assert_eq!(image_name("ghcr.io/a/b/postgres:16@sha256:00"), "postgres");
    assert_eq!(image_name("postgres"), "postgres");
}

#[test]
fn invalid_manifest_yaml_is_named() {
    let err = parse_manifest("kleidia-data", "kind: [").unwrap_err();
    assert!(err.to_string().contains("kleidia-data"), "{err}");
}

#[test]
fn openbao_listener_tls_follows_its_config_then_port_name_and_address() {
    use super::openbao::listener_tls;
    let config = |hcl: &str| {
        let m = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: bao-config}}\ndata:\n  config.hcl: |\n{}\n",
            hcl.lines()
                .map(|l| format!("    {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        parse_manifest("p", &m).unwrap()
    };
    let none = std::collections::BTreeMap::new();
    // OpenBao's default is TLS: a listener without tls_disable speaks it.
    let tls = config(
        "listener \"tcp\" {\n  address = \"[::]:8200\"\n  tls_cert_file = \"/tls/tls.crt\"\n}",
    );
    assert!(listener_tls(&tls, Some("http"), &none, 8200));
    let plain =
        config("listener \"tcp\" {\n  address = \"0.0.0.0:8200\"\n  tls_disable = \"true\"\n}");
    assert!(!listener_tls(&plain, Some("https"), &none, 8200));
    // A listener on another port says nothing about this one.
    let other = config("listener \"tcp\" {\n  address = \"0.0.0.0:9200\"\n  tls_disable = 1\n}");
    assert!(!listener_tls(&other, None, &none, 8200));
    assert!(listener_tls(&other, Some("https"), &none, 8200));
    // Without a config: the port's name, then the address the container uses.
    assert!(listener_tls(&[], Some("https"), &none, 8200));
    assert!(!listener_tls(&[], Some("http"), &none, 8200));
    let env = std::collections::BTreeMap::from([(
        "BAO_ADDR".to_string(),
        "https://127.0.0.1:8200".to_string(),
    )]);
    assert!(listener_tls(&[], Some("http"), &env, 8200));
    // Discovery records the decision: the demo platform serves plain HTTP.
    let demo = parse_manifest("kleidia-platform", DEMO_PLATFORM).unwrap();
    let t = discover_openbao(
        "kleidia-platform",
        &demo,
        &[pod(
            "kleidia-platform-openbao-0",
            &[
                ("app.kubernetes.io/name", "openbao"),
                ("app.kubernetes.io/instance", "kleidia-platform"),
            ],
            true,
        )],
        "kleidia",
        &Default::default(),
    )
    .unwrap();
    assert!(!t.tls);
}
