//! berth-content (being written)
