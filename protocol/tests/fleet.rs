//! Fleet and key files: parse, write back, and precise errors for what an operator gets wrong.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use siren_proto::fleet::{Fleet, KeyEntry, KeyFile, KeyHolder, Link};
use siren_proto::frame::{Address, KeyId};
use siren_proto::vectors;

const FLEET: &str = "\
# Zhoushan test fleet
id,name,latitude,longitude,zone,rating_db,address,key_id,links
ZS-DH-0001,Dinghai harbour,30.0186,122.1066,zhoushan/dinghai/yancang,118.5,17,0x0001,serial:dh-1
ZS-DH-0002,Dinghai school,30.0207,122.1003,zhoushan/dinghai/yancang,112,18,0x0002,serial:dh-1;mqtt
ZS-PT-0001,Putuo ferry,29.9447,122.3020,zhoushan/putuo/shenjiamen,121,1,0x0003,mqtt
";

#[test]
fn a_fleet_file_parses_and_writes_back_identically() {
    let fleet = Fleet::parse("fleet.csv", FLEET).unwrap();
    assert_eq!(fleet.sirens.len(), 3);
    let s = &fleet.sirens[1];
    assert_eq!((s.address, s.key_id), (Address(18), KeyId(2)));
    assert_eq!(s.links, vec![Link::Serial { bus: "dh-1".into() }, Link::Mqtt]);
    assert_eq!(s.zone.ancestry().collect::<Vec<_>>(), ["zhoushan", "zhoushan/dinghai", "zhoushan/dinghai/yancang"]);
    assert!(s.zone.is_within("zhoushan/dinghai") && !s.zone.is_within("zhoushan/ding"));
    assert_eq!(fleet.buses()["dh-1"].len(), 2);
    let mut out = Vec::new();
    fleet.write_csv(&mut out).unwrap();
    assert_eq!(Fleet::parse("again.csv", std::str::from_utf8(&out).unwrap()).unwrap(), fleet);
}

#[test]
fn fleet_errors_name_file_line_and_field() {
    let broken = |from: &str, to: &str| Fleet::parse("fleet.csv", &FLEET.replace(from, to)).unwrap_err().to_string();
    assert_eq!(broken("30.0207", "north"), "fleet.csv:4: field `latitude`: `north` is not a number");
    assert_eq!(broken("30.0207", "95"), "fleet.csv:4: field `latitude`: 95 is outside -90..90");
    assert_eq!(
        broken("0x0002", "0x0001"),
        "fleet.csv: field `key_id`: key id 0x0001 is used by both `ZS-DH-0001` and `ZS-DH-0002`"
    );
    assert_eq!(broken(",18,", ",17,"), "fleet.csv: field `address`: address 17 appears twice on bus `dh-1`");
    assert!(broken("serial:dh-1;mqtt", "radio").starts_with("fleet.csv:4: field `links`: `radio` is not a link"));
    assert!(broken("zhoushan/putuo/shenjiamen", "zhoushan//x").contains("field `zone`"));
    assert!(broken(",1,0x0003", ",0,0x0003").contains("0 is reserved"));
    assert!(broken("rating_db", "loudness").contains("field `rating_db`: missing column"));
}

fn keys() -> KeyFile {
    let entry =
        |id, holder: &str| KeyEntry { key_id: KeyId(id), holder: holder.parse().unwrap(), key: vectors::device_key() };
    KeyFile {
        entries: vec![
            entry(1, "siren:ZS-DH-0001"),
            entry(2, "siren:ZS-DH-0002"),
            entry(3, "siren:ZS-PT-0001"),
            entry(0x8000, "bus:dh-1"),
        ],
    }
}

#[test]
fn key_file_round_trips_and_checks_against_the_fleet() {
    let fleet = Fleet::parse("fleet.csv", FLEET).unwrap();
    let mut out = Vec::new();
    keys().write_csv(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let parsed = KeyFile::parse("keys.csv", &text).unwrap();
    assert_eq!(parsed, keys());
    parsed.check_against(&fleet, "keys.csv").unwrap();
    assert_eq!(parsed.bus_key("dh-1").unwrap().holder, KeyHolder::Bus("dh-1".into()));

    let mut missing = keys();
    missing.entries.pop();
    assert_eq!(
        missing.check_against(&fleet, "keys.csv").unwrap_err().to_string(),
        "keys.csv: field `holder`: no group key for bus `dh-1`"
    );
    let mut swapped = keys();
    swapped.entries[0].holder = KeyHolder::Siren("ZS-PT-0001".into());
    swapped.entries[2].holder = KeyHolder::Siren("ZS-DH-0001".into());
    assert!(
        swapped.check_against(&fleet, "keys.csv").unwrap_err().to_string().contains("belongs to `siren:ZS-PT-0001`")
    );
}

#[test]
fn key_errors_never_echo_key_material() {
    let secret = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeZZ";
    let err = KeyFile::parse("keys.csv", &format!("key_id,holder,key\n1,siren:A,{secret}\n")).unwrap_err().to_string();
    assert_eq!(err, "keys.csv:2: field `key`: not 64 hexadecimal digits");
    assert!(!err.contains("0011223344"));
}
