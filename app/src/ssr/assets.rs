//! The names of the built files under `/pkg`. A release build (`cargo leptos build --release`,
//! `hash-files = true`) puts a content hash in each name and writes them to `hash.txt` beside
//! the server binary; the server reads that file once at start ([`init`]), so pages link the
//! right stylesheet and the files can be cached forever (`Cache-Control: immutable`).

use std::sync::OnceLock;

static STYLESHEET: OnceLock<String> = OnceLock::new();

/// The `hash.txt` beside the running binary, if the build wrote one.
pub fn hash_file() -> Option<std::path::PathBuf> {
    let path = std::env::current_exe().ok()?.parent()?.join("hash.txt");
    path.exists().then_some(path)
}

/// `/pkg/<output>.<hash>.css` from `hash.txt`'s text (`css: <hash>` lines), or
/// `/pkg/<output>.css` when it names no stylesheet.
pub fn stylesheet_from(hashes: Option<&str>, pkg_dir: &str, output: &str) -> String {
    let hash = hashes.and_then(|text| {
        text.lines()
            .filter_map(|l| l.trim().split_once(':'))
            .find(|(kind, _)| kind.trim() == "css")
            .map(|(_, h)| h.trim().to_string())
    });
    match hash {
        Some(h) if !h.is_empty() => format!("/{pkg_dir}/{output}.{h}.css"),
        _ => format!("/{pkg_dir}/{output}.css"),
    }
}

/// Reads `hash.txt` (when `options.hash_files`) once; later calls keep the first answer.
pub fn init(options: &leptos::config::LeptosOptions) {
    let text = options
        .hash_files
        .then(hash_file)
        .flatten()
        .and_then(|p| std::fs::read_to_string(p).ok());
    let _ = STYLESHEET.set(stylesheet_from(
        text.as_deref(),
        &options.site_pkg_dir,
        &options.output_name,
    ));
}

/// The stylesheet's path for `<link rel="stylesheet">`.
pub fn stylesheet() -> &'static str {
    STYLESHEET
        .get()
        .map_or("/pkg/apx-canary.css", |s| s.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stylesheet_carries_the_hash_cargo_leptos_wrote() {
        let text = "js: abc\nwasm: def\ncss: Xy-9_z\n";
        assert_eq!(
            stylesheet_from(Some(text), "pkg", "apx-canary"),
            "/pkg/apx-canary.Xy-9_z.css"
        );
        assert_eq!(
            stylesheet_from(Some("js: abc\n"), "pkg", "apx-canary"),
            "/pkg/apx-canary.css"
        );
        assert_eq!(stylesheet_from(None, "pkg", "x"), "/pkg/x.css");
    }
}
