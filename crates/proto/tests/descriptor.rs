//! The exported descriptor set is what reflection serves: it must decode and describe
//! every Vitals service.

use prost::Message;
use prost_types::FileDescriptorSet;
use vitals_proto::{FILE_DESCRIPTOR_SET, OPERATIONS_SERVICE, SERVICE_NAMES};

fn decoded() -> FileDescriptorSet {
    match FileDescriptorSet::decode(FILE_DESCRIPTOR_SET) {
        Ok(set) => set,
        Err(e) => panic!("FILE_DESCRIPTOR_SET does not decode: {e}"),
    }
}

/// Fully-qualified names of every service in the set.
fn services(set: &FileDescriptorSet) -> Vec<String> {
    set.file
        .iter()
        .flat_map(|f| {
            f.service
                .iter()
                .map(move |s| format!("{}.{}", f.package(), s.name()))
        })
        .collect()
}

#[test]
fn descriptor_set_contains_exactly_the_vitals_services_and_operations() {
    let set = decoded();
    let mut found = services(&set);
    found.sort();
    let mut expected: Vec<String> = SERVICE_NAMES.iter().map(|s| s.to_string()).collect();
    expected.push(OPERATIONS_SERVICE.to_string());
    expected.sort();
    assert_eq!(found, expected);
}

#[test]
fn descriptor_set_contains_every_vitals_package_and_imports() {
    let set = decoded();
    let packages: Vec<&str> = set.file.iter().map(|f| f.package()).collect();
    for p in [
        "vitals.common.v1",
        "vitals.ingestion.v1",
        "vitals.profiles.v1",
        "vitals.scoring.v1",
        "vitals.learner.v1",
        // Imports are included so reflection clients can resolve every type.
        "google.protobuf",
    ] {
        assert!(
            packages.contains(&p),
            "package {p} missing from {packages:?}"
        );
    }
}

#[test]
fn descriptor_set_keeps_source_comments() {
    // grpcurl `describe` shows the comments only if source info is kept.
    let set = decoded();
    let scoring = set
        .file
        .iter()
        .find(|f| f.package() == "vitals.scoring.v1")
        .expect("scoring file present");
    let info = scoring.source_code_info.as_ref().expect("source info kept");
    assert!(
        info.location.iter().any(|l| l
            .leading_comments()
            .contains("Computes and serves health scores")),
        "service comment missing from source info"
    );
}

#[test]
fn ingest_events_is_bidirectional_streaming() {
    let set = decoded();
    let method = set
        .file
        .iter()
        .flat_map(|f| f.service.iter())
        .flat_map(|s| s.method.iter())
        .find(|m| m.name() == "IngestEvents")
        .expect("IngestEvents present");
    assert!(method.client_streaming());
    assert!(method.server_streaming());
}

#[test]
fn generated_messages_round_trip() {
    use vitals_proto::common::v1::{AttributeValue, attribute_value::Kind};
    use vitals_proto::ingestion::v1::{Account, UpsertAccountsRequest};

    let mut account = Account {
        account_id: "acme".into(),
        display_name: "Acme Corp".into(),
        ..Default::default()
    };
    account.attributes.insert(
        "seats".into(),
        AttributeValue {
            kind: Some(Kind::NumberValue(50.0)),
        },
    );
    let req = UpsertAccountsRequest {
        accounts: vec![account],
        replace_attributes: false,
    };
    let bytes = req.encode_to_vec();
    let back = UpsertAccountsRequest::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(back, req);
}

#[test]
fn per_package_sets_hold_their_own_service_and_imports() {
    use vitals_proto::{common, ingestion, learner, profiles, scoring};
    let cases: [(&[u8], &str); 4] = [
        (ingestion::v1::FILE_DESCRIPTOR_SET, SERVICE_NAMES[0]),
        (profiles::v1::FILE_DESCRIPTOR_SET, SERVICE_NAMES[1]),
        (scoring::v1::FILE_DESCRIPTOR_SET, SERVICE_NAMES[2]),
        (learner::v1::FILE_DESCRIPTOR_SET, SERVICE_NAMES[3]),
    ];
    for (bytes, service) in cases {
        let set = FileDescriptorSet::decode(bytes).expect("per-package set decodes");
        let own: Vec<String> = services(&set)
            .into_iter()
            .filter(|s| s != OPERATIONS_SERVICE)
            .collect();
        assert_eq!(own, vec![service.to_string()]);
        // The shared package must come along, or reflection cannot resolve its types.
        assert!(
            set.file.iter().any(|f| f.package() == "vitals.common.v1"),
            "{service}: vitals.common.v1 missing"
        );
    }
    let common = FileDescriptorSet::decode(common::v1::FILE_DESCRIPTOR_SET).expect("decodes");
    assert!(services(&common).is_empty());
    assert!(
        common
            .file
            .iter()
            .any(|f| f.package() == "vitals.common.v1")
    );
}
