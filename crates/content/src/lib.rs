//! Content-addressed blob store.
//!
//! Blobs live under `<root>/blobs/sha256/<hex>`; partial downloads live under
//! `<root>/ingest/<hex>` until their digest is verified, so nothing is visible
//! under `blobs/` before it is known to be correct.

mod digest;
mod ingest;
mod store;

pub use digest::{Digest, DigestError};
pub use ingest::Ingest;
pub use store::{ContentError, ContentStore};
