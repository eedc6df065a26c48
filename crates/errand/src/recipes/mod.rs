//! Recipes: how to buy from a storefront, as a TOML data file that the browser executor
//! follows. This module reads and checks them; `docs/recipes.md` is the reference.
//!
//! A recipe is checked whole when it loads: every mistake is reported with its file,
//! line and column, so a recipe that loads can only fail at run time because of the
//! store's pages, never because of its own shape.

mod format;
pub mod model;
pub mod template;
mod validate;
pub mod values;

use std::fmt;
use std::path::Path;

pub use format::AccountMode;

/// The demo store's recipe, built in (`recipe = "builtin:demo"`).
pub const DEMO_RECIPE: &str = include_str!("../../recipes/demo.toml");
pub use model::{
    Action, Detector, Expectation, Location, Phase, Read, Recipe, Step, Target, WaitFor,
};

/// One thing wrong with a recipe, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the file; `None` when the file could not be read at all.
    pub location: Option<Location>,
    pub message: String,
}

/// A recipe that cannot be used: every problem found in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RecipeError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for RecipeError {
    /// One `file:line:column: message` line per problem.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match problem.location {
                Some(at) => write!(f, "{}:{at}: {}", self.file, problem.message)?,
                None => write!(f, "{}: {}", self.file, problem.message)?,
            }
        }
        Ok(())
    }
}

impl Recipe {
    /// Reads and checks a recipe file.
    pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| RecipeError {
            file: file.clone(),
            problems: vec![Problem {
                location: None,
                message: format!("cannot read the recipe: {e}"),
            }],
        })?;
        Recipe::parse(&file, &text)
    }

    /// Checks a recipe's text; `file` names it in messages.
    pub fn parse(file: &str, text: &str) -> Result<Recipe, RecipeError> {
        let error = |problems| RecipeError {
            file: file.to_string(),
            problems,
        };
        let raw: format::RecipeFile = toml::from_str(text).map_err(|e| {
            error(vec![Problem {
                location: e.span().map(|span| Location::of(text, span.start)),
                // toml's messages may run over lines ("invalid inline table\nexpected `}`").
                message: e
                    .message()
                    .trim_end()
                    .lines()
                    .collect::<Vec<_>>()
                    .join(": "),
            }])
        })?;
        validate::validate(file, text, raw).map_err(error)
    }
}

#[cfg(test)]
mod tests;
