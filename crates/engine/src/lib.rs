//! berth-engine (being written)
