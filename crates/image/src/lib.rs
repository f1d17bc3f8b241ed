//! berth-image (being written)
