//! The pages loaded on demand: with `cargo leptos build --release --split` each one's code is a
//! separate WASM file fetched when the page is first shown, so the overview's first load carries
//! only the overview (BENCHMARKS.md, "Bundle"). Without `--split` they are ordinary routes.

use leptos::prelude::*;
use leptos_router::{lazy_route, LazyRoute};

/// `/policies/:name`.
pub struct PolicyPage;

#[lazy_route]
impl LazyRoute for PolicyPage {
    fn data() -> Self {
        Self
    }

    fn view(_this: Self) -> AnyView {
        view! { <super::policy::Policy/> }.into_any()
    }
}

/// `/policies/:name/simulate`.
pub struct SimulatePage;

#[lazy_route]
impl LazyRoute for SimulatePage {
    fn data() -> Self {
        Self
    }

    fn view(_this: Self) -> AnyView {
        view! { <super::simulate::Simulate/> }.into_any()
    }
}

/// `/policies/new`.
pub struct NewPolicyPage;

#[lazy_route]
impl LazyRoute for NewPolicyPage {
    fn data() -> Self {
        Self
    }

    fn view(_this: Self) -> AnyView {
        view! { <super::new_policy::NewPolicy/> }.into_any()
    }
}
