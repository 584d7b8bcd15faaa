//! Settings of the HTTP listener that do not belong to the engine.

/// How the HTTP endpoints treat browsers on other origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// Origins allowed by CORS; `*` allows any. Web pages are usually served
    /// from another origin than the broker, so the default is `*`.
    pub allowed_origins: Vec<String>,
}

impl Default for HttpOptions {
    fn default() -> HttpOptions {
        HttpOptions {
            allowed_origins: vec!["*".to_string()],
        }
    }
}
