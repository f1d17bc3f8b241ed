//! berth-build (being written)
