//! berth-registry (being written)
