//! A client for the OCI distribution (Docker registry v2) API: auth
//! (anonymous, basic, bearer tokens), manifests, resumable verified blob
//! downloads into a [`berth_content::ContentStore`], concurrent pulls with
//! progress events, and pushes.

mod auth;
mod blob;
mod client;
mod error;
mod pull;
mod push;
mod push_image;

pub use auth::Credentials;
pub use blob::{blob_tee, BlobTee, TeeReader};
pub use client::{ClientConfig, FetchedManifest, RegistryClient};
pub use error::RegistryError;
pub use pull::{fetch_layers, pull_to_store, resolve_image, LayerDesc, PullEvent, PulledManifest};
pub use push_image::{push_from_store, PushEvent};
