//! One module per command group.

pub mod build;
pub mod compose;
pub mod compose_file;
pub mod compose_up;
pub mod container;
pub mod cp;
pub mod exec;
pub mod image;
pub mod image_io;
pub mod inspect;
pub mod lifecycle;
pub mod login;
pub mod logs;
pub mod network;
pub mod ps;
pub mod stats;
pub mod system;
pub mod volume;
