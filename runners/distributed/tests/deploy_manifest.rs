//! The Kubernetes manifest under `deploy/` agrees with itself and with the runner: a
//! headless Service selecting the pods, a StatefulSet using it, and a hosts file (parsed by
//! the runner's own parser) listing exactly its pods, in ordinal order, on the container's
//! port, each pod's `--process-id` its ordinal.

use beamline_runner_distributed::hosts::parse_hosts;
use serde_yaml::Value;

fn documents() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/kubernetes/clickstream.yaml"
    );
    let text = std::fs::read_to_string(path).expect("the manifest");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("a YAML document"))
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("a string, not {v:?}"))
}

#[test]
fn the_statefulset_its_service_and_its_hosts_file_agree() {
    let docs = documents();
    let service = of_kind(&docs, "Service");
    let set = of_kind(&docs, "StatefulSet");
    let config = of_kind(&docs, "ConfigMap");

    // A headless Service selecting the StatefulSet's pods, named as its serviceName.
    assert_eq!(text(&service["spec"]["clusterIP"]), "None");
    let service_name = text(&service["metadata"]["name"]);
    assert_eq!(text(&set["spec"]["serviceName"]), service_name);
    let labels = &set["spec"]["template"]["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(&labels[k], v, "the Service selects the pods");
    }
    assert_eq!(set["spec"]["selector"]["matchLabels"], *labels);

    // The hosts file: the runner reads it, one process per replica, in ordinal order.
    let replicas = set["spec"]["replicas"].as_u64().unwrap() as usize;
    let hosts = parse_hosts(text(&config["data"]["hosts"])).expect("the runner reads it");
    assert_eq!(hosts.len(), replicas);
    let container = &set["spec"]["template"]["spec"]["containers"][0];
    let port = container["ports"][0]["containerPort"].as_u64().unwrap() as u16;
    let name = text(&set["metadata"]["name"]);
    let namespace = set["metadata"]["namespace"].as_str().unwrap_or("default");
    for (ordinal, h) in hosts.iter().enumerate() {
        assert_eq!(
            h.host,
            format!("{name}-{ordinal}.{service_name}.{namespace}.svc.cluster.local")
        );
        assert_eq!(h.port, port);
    }
    assert!(service["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|p| p["port"].as_u64() == Some(port as u64)));

    // The program runs the distributed runner over that file, its process id the pod's
    // ordinal.
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(text)
        .collect();
    assert!(args.contains(&"--runner=distributed"));
    let mount = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "hosts")
        .expect("the hosts file is mounted");
    let volume = set["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "hosts")
        .unwrap();
    assert_eq!(
        text(&volume["configMap"]["name"]),
        text(&config["metadata"]["name"])
    );
    assert!(args.contains(&format!("--hosts={}/hosts", text(&mount["mountPath"])).as_str()));
    assert!(args.contains(&"--process-id=$(PROCESS_ID)"));
    let env = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "PROCESS_ID")
        .expect("PROCESS_ID");
    assert_eq!(
        text(&env["valueFrom"]["fieldRef"]["fieldPath"]),
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
}
