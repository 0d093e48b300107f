//! Backup files (`Store::restore`, `Store::verify_backup`): a damaged one
//! fails without panicking and leaves no store behind; a good one restores
//! every record.

use proptest::prelude::*;

use crawld::store::Store;

use super::cases;

const MAGIC: &[u8] = b"CRAWLD-BACKUP 1\n";

/// A well-formed backup of `records`, as `Store::backup` writes one.
fn backup_bytes(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for (k, v) in records {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v);
    }
    out.extend_from_slice(&u32::MAX.to_be_bytes());
    out.extend_from_slice(&(records.len() as u64).to_be_bytes());
    let digest = xxhash_rust::xxh3::xxh3_64(&out);
    out.extend_from_slice(&digest.to_be_bytes());
    out
}

fn records() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    let bytes = prop::collection::vec(any::<u8>(), 1..12);
    prop::collection::vec((bytes.clone(), bytes), 0..6)
}

/// Damaged backups: a good one truncated, with bytes overwritten, or with a
/// length field set high; and plain arbitrary bytes.
fn damaged() -> impl Strategy<Value = Vec<u8>> {
    let edits = (
        records(),
        any::<prop::sample::Index>(),
        prop::collection::vec(any::<u8>(), 1..6),
        0u8..3,
    )
        .prop_map(|(records, at, bytes, how)| {
            let mut file = backup_bytes(&records);
            let i = at.index(file.len());
            match how {
                0 => file.truncate(i),
                1 => {
                    let end = (i + bytes.len()).min(file.len());
                    let n = end - i;
                    if file[i..end] == bytes[..n] {
                        file.truncate(i);
                    } else {
                        file[i..end].copy_from_slice(&bytes[..n]);
                    }
                }
                _ => {
                    let at = MAGIC.len().min(file.len());
                    file.truncate(at);
                    file.extend_from_slice(&u32::MAX.wrapping_sub(1 + i as u32).to_be_bytes());
                    file.extend_from_slice(&bytes);
                }
            }
            file
        });
    prop_oneof![edits, prop::collection::vec(any::<u8>(), 0..64)]
}

proptest! {
    #![proptest_config(cases(48))]

    #[test]
    fn a_damaged_backup_fails_and_leaves_no_store(file in damaged()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup");
        std::fs::write(&path, &file).unwrap();
        let state = dir.path().join("state");
        prop_assert!(Store::verify_backup(file.as_slice(), &path).is_err());
        let restored = Store::restore(&state, &path);
        prop_assert!(restored.is_err(), "restored {:?} from a damaged file", restored.ok());
        prop_assert!(!state.join("db").exists(), "a failed restore left a store");
        prop_assert!(!state.join("db.restoring").exists(), "a failed restore left its scratch store");
    }

    #[test]
    fn a_good_backup_restores_every_record(records in records()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup");
        let bytes = backup_bytes(&records);
        let verified = Store::verify_backup(bytes.as_slice(), &path);
        prop_assert_eq!(verified.ok(), Some(records.len() as u64));
        std::fs::write(&path, bytes).unwrap();
        let state = dir.path().join("state");
        let restored = Store::restore(&state, &path);
        prop_assert!(restored.is_ok(), "{}", restored.unwrap_err());
        prop_assert_eq!(restored.unwrap(), records.len() as u64);
        prop_assert!(state.join("db").exists());
    }
}
