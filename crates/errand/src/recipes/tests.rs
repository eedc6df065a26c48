//! Loading whole recipes: the demo retailer's, the examples, and mistakes with the
//! line each is reported at.

use std::path::{Path, PathBuf};

use super::*;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn demo_recipe_loads() {
    let recipe =
        Recipe::load(&crate_dir().join("recipes/demo.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recipe.name, "demo");
    assert_eq!(recipe.account, AccountMode::SignIn);
    let phases: Vec<Phase> = recipe.phases.iter().map(|(p, _)| *p).collect();
    assert_eq!(phases, Phase::ALL);
    assert!(recipe.serves("127.0.0.1", Some(8090)));
    assert!(!recipe.serves("shop.example", None));
}
