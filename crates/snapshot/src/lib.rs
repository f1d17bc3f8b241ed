//! Snapshotter over overlayfs, in containerd's vocabulary.
//!
//! An *active* snapshot (made by [`Snapshotter::prepare`]) has a key and is
//! writable; [`Snapshotter::commit`] turns it into a read-only, named
//! *committed* snapshot that can be the parent of others. A *view* is a
//! read-only snapshot of a parent. The snapshotter only describes mounts
//! ([`Mount`]); callers mount them with [`mount_all`].

mod idmap;
mod index;
mod mount;
mod snapshotter;

pub use idmap::{mount_all_idmapped, IdRange, IdmapError, IdmapUserns};
pub use mount::{mount_all, unmount, Mount, MountError};
pub use snapshotter::{Kind, SnapshotError, SnapshotInfo, Snapshotter, SCRATCH_PREFIX};
