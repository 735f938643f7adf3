//! Every message, field, enum and service Beamline's `.proto` files declare matches Apache
//! Beam 2.77's descriptors (taken from its wheel by data/dump_beam_descriptors.py): same
//! names, numbers, types, labels, oneofs, enum values and RPC signatures.

use std::collections::HashMap;

use prost::Message;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet,
    ServiceDescriptorProto,
};

/// Everything a descriptor set declares, by fully qualified name.
#[derive(Default)]
struct Index<'a> {
    messages: HashMap<String, &'a DescriptorProto>,
    enums: HashMap<String, &'a EnumDescriptorProto>,
    services: HashMap<String, &'a ServiceDescriptorProto>,
}

impl<'a> Index<'a> {
    fn of(set: &'a FileDescriptorSet) -> Self {
        let mut index = Index::default();
        for file in &set.file {
            let prefix = format!(".{}", file.package());
            for m in &file.message_type {
                index.add_message(&prefix, m);
            }
            for e in &file.enum_type {
                index.enums.insert(format!("{prefix}.{}", e.name()), e);
            }
            for s in &file.service {
                index.services.insert(format!("{prefix}.{}", s.name()), s);
            }
        }
        index
    }

    fn add_message(&mut self, prefix: &str, m: &'a DescriptorProto) {
        let name = format!("{prefix}.{}", m.name());
        for nested in &m.nested_type {
            self.add_message(&name, nested);
        }
        for e in &m.enum_type {
            self.enums.insert(format!("{name}.{}", e.name()), e);
        }
        self.messages.insert(name, m);
    }
}

fn ours() -> FileDescriptorSet {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");
    let mut files = Vec::new();
    collect(std::path::Path::new(root), root, &mut files).expect("list proto files");
    let fds = protox::compile(&files, [root]).expect("Beamline's protos compile");
    // Only the files under proto/ (not google/protobuf imports).
    FileDescriptorSet {
        file: fds
            .file
            .into_iter()
            .filter(|f| f.name().starts_with("org/"))
            .collect(),
    }
}

fn collect(dir: &std::path::Path, root: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, root, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            let rel = path.strip_prefix(root).expect("under root");
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

fn beams() -> FileDescriptorSet {
    let bytes = include_bytes!("data/beam_2_77_descriptors.pb");
    FileDescriptorSet::decode(&bytes[..]).expect("Beam's descriptor set decodes")
}

fn oneof_name(m: &DescriptorProto, f: &FieldDescriptorProto) -> Option<String> {
    // proto3 `optional` makes a synthetic oneof: not a oneof on the wire's contract.
    if f.proto3_optional() {
        return None;
    }
    f.oneof_index
        .map(|i| m.oneof_decl[i as usize].name().to_owned())
}

fn compare_message(
    name: &str,
    ours: &DescriptorProto,
    beams: &DescriptorProto,
    problems: &mut Vec<String>,
) {
    for f in &ours.field {
        let Some(b) = beams.field.iter().find(|b| b.name() == f.name()) else {
            problems.push(format!("{name}.{}: no such field in Beam", f.name()));
            continue;
        };
        let at = format!("{name}.{}", f.name());
        if f.number() != b.number() {
            problems.push(format!(
                "{at}: number {} (Beam: {})",
                f.number(),
                b.number()
            ));
        }
        if f.r#type() != b.r#type() {
            problems.push(format!(
                "{at}: type {:?} (Beam: {:?})",
                f.r#type(),
                b.r#type()
            ));
        }
        if f.type_name() != b.type_name() {
            problems.push(format!(
                "{at}: type {} (Beam: {})",
                f.type_name(),
                b.type_name()
            ));
        }
        if f.label() != b.label() {
            problems.push(format!(
                "{at}: label {:?} (Beam: {:?})",
                f.label(),
                b.label()
            ));
        }
        if f.proto3_optional() != b.proto3_optional() {
            problems.push(format!("{at}: proto3 optional differs from Beam"));
        }
        let (o, bo) = (oneof_name(ours, f), oneof_name(beams, b));
        if o != bo {
            problems.push(format!("{at}: oneof {o:?} (Beam: {bo:?})"));
        }
    }
    // A number we use for one field must not be another field's in Beam.
    for f in &ours.field {
        if let Some(b) = beams.field.iter().find(|b| b.number() == f.number()) {
            if b.name() != f.name() {
                problems.push(format!(
                    "{name}.{}: number {} is Beam's `{}`",
                    f.name(),
                    f.number(),
                    b.name()
                ));
            }
        }
    }
}

fn compare_enum(
    name: &str,
    ours: &EnumDescriptorProto,
    beams: &EnumDescriptorProto,
    problems: &mut Vec<String>,
) {
    for v in &ours.value {
        match beams.value.iter().find(|b| b.name() == v.name()) {
            None => problems.push(format!("{name}.{}: no such value in Beam", v.name())),
            Some(b) if b.number() != v.number() => problems.push(format!(
                "{name}.{}: {} (Beam: {})",
                v.name(),
                v.number(),
                b.number()
            )),
            Some(_) => {}
        }
    }
}

fn compare_service(
    name: &str,
    ours: &ServiceDescriptorProto,
    beams: &ServiceDescriptorProto,
    problems: &mut Vec<String>,
) {
    for m in &ours.method {
        let Some(b) = beams.method.iter().find(|b| b.name() == m.name()) else {
            problems.push(format!("{name}/{}: no such method in Beam", m.name()));
            continue;
        };
        let sig = |m: &prost_types::MethodDescriptorProto| {
            (
                m.input_type().to_owned(),
                m.output_type().to_owned(),
                m.client_streaming(),
                m.server_streaming(),
            )
        };
        if sig(m) != sig(b) {
            problems.push(format!(
                "{name}/{}: {:?} (Beam: {:?})",
                m.name(),
                sig(m),
                sig(b)
            ));
        }
    }
}

/// Every difference between what Beamline declares and Beam's descriptors.
fn differences() -> (Vec<String>, usize) {
    let (ours, beams) = (ours(), beams());
    let (o, b) = (Index::of(&ours), Index::of(&beams));
    let mut problems = Vec::new();
    for (name, m) in &o.messages {
        match b.messages.get(name) {
            Some(bm) => compare_message(name, m, bm, &mut problems),
            None => problems.push(format!("{name}: no such message in Beam")),
        }
    }
    for (name, e) in &o.enums {
        match b.enums.get(name) {
            Some(be) => compare_enum(name, e, be, &mut problems),
            None => problems.push(format!("{name}: no such enum in Beam")),
        }
    }
    for (name, s) in &o.services {
        match b.services.get(name) {
            Some(bs) => compare_service(name, s, bs, &mut problems),
            None => problems.push(format!("{name}: no such service in Beam")),
        }
    }
    problems.sort();
    let checked = o.messages.len() + o.enums.len() + o.services.len();
    (problems, checked)
}

#[test]
fn every_declaration_matches_beam_2_77() {
    let (problems, checked) = differences();
    assert!(checked > 100, "only {checked} declarations found");
    assert!(
        problems.is_empty(),
        "{} difference(s) from Beam 2.77:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_comparison_catches_a_wrong_number() {
    // The check itself must fail on a mismatch: renumber one field of Beam's own set.
    let beams = beams();
    let mut altered = beams.clone();
    let file = altered
        .file
        .iter_mut()
        .find(|f| f.name().ends_with("endpoints.proto"))
        .expect("endpoints.proto");
    let msg = file
        .message_type
        .iter_mut()
        .find(|m| m.name() == "ApiServiceDescriptor")
        .expect("ApiServiceDescriptor");
    msg.field[0].number = Some(7);
    let (a, b) = (Index::of(&altered), Index::of(&beams));
    let name = ".org.apache.beam.model.pipeline.v1.ApiServiceDescriptor";
    let mut problems = Vec::new();
    compare_message(name, a.messages[name], b.messages[name], &mut problems);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("number 7 (Beam: 1)"), "{problems:?}");
}

/// Not a check: what Beam declares in the messages we declare but we leave out
/// (`cargo test -p beamline-proto --test proto_wire_contract -- --ignored --nocapture`).
#[test]
#[ignore]
fn list_fields_beam_has_and_we_leave_out() {
    let (ours, beams) = (ours(), beams());
    let (o, b) = (Index::of(&ours), Index::of(&beams));
    let mut missing = Vec::new();
    for (name, m) in &o.messages {
        if let Some(bm) = b.messages.get(name) {
            for f in &bm.field {
                if !m.field.iter().any(|x| x.name() == f.name()) {
                    missing.push(format!("{name}.{} = {}", f.name(), f.number()));
                }
            }
        }
    }
    missing.sort();
    println!("{}", missing.join("\n"));
}
