//! Everything of the app that only the server runs, fenced by the `ssr` feature here and
//! nowhere else: the shared state, and the pure functions that turn store data into pages
//! (the browser build never compiles them).

pub mod overview;
pub mod state;
pub mod traffic;
