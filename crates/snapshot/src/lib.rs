//! berth-snapshot (being written)
