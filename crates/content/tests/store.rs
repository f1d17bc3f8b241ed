use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use berth_content::{ContentError, ContentStore, Digest};

#[test]
fn write_read_list_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path()).unwrap();
    let d = store.write_blob(b"hello").unwrap();
    assert_eq!(d, Digest::sha256_of(b"hello"));
    assert!(store.has(&d));
    assert_eq!(store.size(&d).unwrap(), 5);
    assert_eq!(store.read(&d).unwrap(), b"hello");
    assert_eq!(store.write_blob(b"hello").unwrap(), d);
    let e = store.write_blob(b"world").unwrap();
    let mut want = vec![d.clone(), e.clone()];
    want.sort();
    assert_eq!(store.list().unwrap(), want);
    assert!(store
        .path(&d)
        .ends_with(format!("blobs/sha256/{}", d.hex())));
    store.delete(&d).unwrap();
    assert!(!store.has(&d));
    assert!(matches!(store.read(&d), Err(ContentError::NotFound(_))));
    assert!(matches!(store.delete(&d), Err(ContentError::NotFound(_))));
}

#[test]
fn ingest_resumes_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path()).unwrap();
    let data = vec![7u8; 200_000];
    let d = Digest::sha256_of(&data);
    {
        let mut ing = store.ingest(&d).unwrap();
        assert_eq!(ing.offset(), 0);
        ing.write_all(&data[..70_000]).unwrap();
    } // dropped: partial kept
    assert!(!store.has(&d));
    let ing = store.ingest(&d).unwrap();
    assert_eq!(ing.offset(), 70_000);
    // a short commit keeps the partial
    let err = ing.commit(Some(200_000)).unwrap_err();
    assert!(matches!(err, ContentError::SizeMismatch { .. }), "{err}");
    let mut ing = store.ingest(&d).unwrap();
    assert_eq!(ing.offset(), 70_000);
    ing.write_all(&data[70_000..]).unwrap();
    assert_eq!(ing.commit(Some(200_000)).unwrap(), d);
    assert_eq!(store.read(&d).unwrap(), data);
    assert_eq!(
        std::fs::read_dir(tmp.path().join("ingest"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn wrong_digest_deletes_partial_and_names_both() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path()).unwrap();
    let d = Digest::sha256_of(b"expected");
    let mut ing = store.ingest(&d).unwrap();
    ing.write_all(b"something else").unwrap();
    let msg = ing.commit(None).unwrap_err().to_string();
    assert!(msg.contains(&d.to_string()), "{msg}");
    assert!(
        msg.contains(&Digest::sha256_of(b"something else").to_string()),
        "{msg}"
    );
    assert!(!store.has(&d));
    assert_eq!(store.ingest(&d).unwrap().offset(), 0);
}

#[test]
fn reset_and_abort() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path()).unwrap();
    let d = Digest::sha256_of(b"abc");
    let mut ing = store.ingest(&d).unwrap();
    ing.write_all(b"zzz").unwrap();
    ing.reset().unwrap();
    ing.write_all(b"abc").unwrap();
    ing.abort().unwrap();
    assert_eq!(store.ingest(&d).unwrap().offset(), 0);
}

#[test]
fn second_writer_waits_or_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path()).unwrap();
    let d = Digest::sha256_of(b"locked");
    let mut first = store.ingest(&d).unwrap();
    assert!(matches!(store.try_ingest(&d), Err(ContentError::Locked(_))));
    let (tx, rx) = mpsc::channel();
    let s2 = store.clone();
    let d2 = d.clone();
    let h = thread::spawn(move || {
        let ing = s2.ingest(&d2).unwrap();
        tx.send(s2.has(&d2)).unwrap();
        drop(ing);
    });
    // The waiter cannot get past the lock while we hold it.
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
    first.write_all(b"locked").unwrap();
    first.commit(Some(6)).unwrap();
    // After the commit the waiter sees the blob present.
    assert!(rx.recv().unwrap());
    h.join().unwrap();
}

#[test]
fn write_stream_hashes_unknown_content() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path()).unwrap();
    let data = vec![3u8; 150_000];
    let (d, n) = store.write_stream(&data[..]).unwrap();
    assert_eq!(d, Digest::sha256_of(&data));
    assert_eq!(n, 150_000);
    assert_eq!(store.read(&d).unwrap(), data);
    assert_eq!(store.write_stream(&data[..]).unwrap().0, d);
    assert_eq!(
        std::fs::read_dir(tmp.path().join("ingest"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn list_and_abort_ingests() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path()).unwrap();
    let d = Digest::sha256_of(b"partial data");
    store.ingest(&d).unwrap().write_all(b"partial").unwrap();
    assert_eq!(store.list_ingests().unwrap(), vec![(d.clone(), 7)]);
    store.abort_ingest(&d).unwrap();
    assert!(store.list_ingests().unwrap().is_empty());
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn ingest_reads_back_its_partial_data() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path()).unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let d = Digest::sha256_of(&data);
    {
        let mut ing = store.ingest(&d).unwrap();
        ing.write_all(&data[..60_000]).unwrap();
    }
    let mut ing = store.ingest(&d).unwrap();
    let mut back = Vec::new();
    let mut buf = vec![0u8; 7_000];
    loop {
        let n = ing.read_at(back.len() as u64, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        back.extend_from_slice(&buf[..n]);
    }
    assert_eq!(back, &data[..60_000]);
    // reading does not move the write position
    ing.write_all(&data[60_000..]).unwrap();
    assert_eq!(ing.read_at(99_999, &mut buf).unwrap(), 1);
    assert_eq!(ing.commit(Some(100_000)).unwrap(), d);
}
