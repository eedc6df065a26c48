//! Buying through a store's web pages: a recipe (see `crate::recipes`) run in headless
//! Chromium.

pub mod chromium;
pub mod runner;
