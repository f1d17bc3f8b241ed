//! Image formats: references, manifests and indexes, image configs, and
//! applying layers into snapshots.

pub mod archive;
pub mod config;
pub mod diff;
pub mod layer;
pub mod manifest;
pub mod reference;
pub mod unpack;

pub use config::ImageConfig;
pub use diff::{write_layer, write_layer_owned, OwnerMap};
pub use layer::{apply_layer, chain_id, chain_ids, AppliedLayer, LayerError};
pub use manifest::{
    choose_platform, parse_manifest, Descriptor, ImageIndex, ImageManifest, Manifest, Platform,
};
pub use reference::Reference;
pub use unpack::{
    commit_extracted, discard_extracted, extract_layer, extract_layer_from_store, unpack_layers,
    Extracted, UnpackError,
};
