//! Container ids and names: random 64-hex ids, Docker-style generated names, validation.

use rand::Rng;

const LEFT: &[&str] = &[
    "brave", "calm", "eager", "fond", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nimble", "quiet", "rapid", "sharp", "steady", "tidy", "vivid", "witty", "zealous", "bold",
];
const RIGHT: &[&str] = &[
    "anchor", "beacon", "berth", "buoy", "cargo", "dock", "harbor", "hull", "keel", "mast", "pier",
    "quay", "rudder", "sail", "stern", "tide", "wharf", "ferry", "galley", "helm",
];

/// A new random id: 64 lowercase hex characters.
pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::thread_rng().gen();
    hex::encode(bytes)
}

/// A generated container name such as `brave_harbor`, with a numeric suffix for variety.
pub fn generate_name() -> String {
    let mut rng = rand::thread_rng();
    let l = LEFT[rng.gen_range(0..LEFT.len())];
    let r = RIGHT[rng.gen_range(0..RIGHT.len())];
    format!("{l}_{r}{}", rng.gen_range(0..1000))
}

/// Whether `name` is a valid container name (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    name.len() >= 2 && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        assert_eq!(new_id().len(), 64);
        assert!(valid_name(&generate_name()));
        assert!(valid_name("web-1.x_y"));
        assert!(!valid_name("-web"));
        assert!(!valid_name("a"));
        assert!(!valid_name("we b"));
    }
}
