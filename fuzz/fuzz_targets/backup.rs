//! The backup reader (`Store::verify_backup`, the reader `store restore`
//! runs before any store appears) on fuzzed backup files: header, record
//! lengths, trailer, count and checksum. The whole restore, into a temporary
//! state dir, is a property test in tests/properties/backup.rs;
//! here the reader alone runs about a hundred times faster.

#![no_main]

use std::path::Path;

use crawld::store::Store;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = Store::verify_backup(data, Path::new("fuzz.backup")) {
        // Every record takes at least its two length fields.
        assert!(
            n <= data.len() as u64 / 8,
            "{n} records in {} bytes",
            data.len()
        );
    }
});
