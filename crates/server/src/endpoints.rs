//! The route table ([`crate::routes`]) bound to its handlers: one line per endpoint.
//!
//! Each binding takes its path and method from the handler's `#[utoipa::path]` annotation
//! (which names the path by its `routes` constant), so the router and the OpenAPI document
//! are built from the same list and cannot disagree. [`bindings`] is checked against the
//! table by a test here, and the router refuses to start on a path the table does not know.

use axum::extract::State;
use axum::routing::{MethodFilter, MethodRouter, on};
use utoipa::openapi::HttpMethod;
use utoipa::openapi::path::{Operation, PathItem, PathsBuilder};

use crate::{AppState, accounts, attest, device, enroll, health, openapi, routes};

/// One endpoint bound to its handler.
pub struct Binding {
    /// The path (from the handler's annotation, or the table for undocumented endpoints).
    pub path: String,
    /// The handler, on its method.
    pub handler: MethodRouter<AppState>,
    /// Its operation in the OpenAPI document (`None`: undocumented).
    pub doc: Option<Doc>,
}

/// An endpoint's operation in the OpenAPI document.
pub struct Doc {
    /// Path, method and operation, from the handler's annotation.
    pub operation: fn() -> (String, HttpMethod, Operation),
    /// The operation's tag.
    pub tag: String,
}

fn filter(methods: &[HttpMethod]) -> MethodFilter {
    methods
        .iter()
        .map(|m| match m {
            HttpMethod::Get => MethodFilter::GET,
            HttpMethod::Post => MethodFilter::POST,
            HttpMethod::Put => MethodFilter::PUT,
            HttpMethod::Delete => MethodFilter::DELETE,
            HttpMethod::Options => MethodFilter::OPTIONS,
            HttpMethod::Head => MethodFilter::HEAD,
            HttpMethod::Patch => MethodFilter::PATCH,
            HttpMethod::Trace => MethodFilter::TRACE,
        })
        .reduce(MethodFilter::or)
        .unwrap_or(MethodFilter::GET)
}

/// `P`'s path and operation.
fn operation<P: utoipa::Path>() -> (String, HttpMethod, Operation) {
    let method = P::methods().into_iter().next().unwrap_or(HttpMethod::Get);
    (P::path(), method, P::operation())
}

/// The tag utoipa's `paths(...)` derive gives an operation: its handler's module
/// (`crate::accounts`), so the document did not change when its operations came to be
/// listed from the route table.
fn module_tag<P>() -> String {
    let name = std::any::type_name::<P>();
    let module = name.rsplit_once("::").map_or(name, |(m, _)| m);
    match module.split_once("::") {
        Some((_, rest)) => format!("crate::{rest}"),
        None => "crate".to_owned(),
    }
}

/// Binds a documented handler: path and method from its annotation `P`.
fn documented<P: utoipa::Path>(handler: fn(MethodFilter) -> MethodRouter<AppState>) -> Binding {
    Binding {
        path: P::path(),
        handler: handler(filter(&P::methods())),
        doc: Some(Doc {
            operation: operation::<P>,
            tag: module_tag::<P>(),
        }),
    }
}

/// Binds a documented handler under the tag `tag`.
fn tagged<P: utoipa::Path>(
    tag: &str,
    handler: fn(MethodFilter) -> MethodRouter<AppState>,
) -> Binding {
    let mut binding = documented::<P>(handler);
    if let Some(doc) = &mut binding.doc {
        tag.clone_into(&mut doc.tag);
    }
    binding
}

/// Every endpoint of the public listener, bound to its handler.
pub fn bindings() -> Vec<Binding> {
    use accounts::{
        __path_jwks, __path_me, __path_register, __path_register_confirm, __path_resend,
        __path_reset, __path_reset_confirm, __path_token,
    };
    use attest::{__path_attest, __path_challenge};
    use device::{__path_device, __path_echo};
    use enroll::{__path_confirm, __path_enroll, __path_mailbox};
    use health::{__path_healthz, __path_readyz};
    vec![
        documented::<__path_enroll>(|m| on(m, enroll::enroll)),
        documented::<__path_confirm>(|m| on(m, enroll::confirm)),
        documented::<__path_mailbox>(|m| on(m, enroll::mailbox)),
        documented::<__path_device>(|m| on(m, device::device)),
        documented::<__path_echo>(|m| on(m, device::echo)),
        documented::<__path_register>(|m| on(m, accounts::register)),
        documented::<__path_register_confirm>(|m| on(m, accounts::register_confirm)),
        documented::<__path_resend>(|m| on(m, accounts::resend)),
        documented::<__path_reset>(|m| on(m, accounts::reset)),
        documented::<__path_reset_confirm>(|m| on(m, accounts::reset_confirm)),
        documented::<__path_token>(|m| on(m, accounts::token)),
        documented::<__path_me>(|m| on(m, accounts::me)),
        documented::<__path_jwks>(|m| on(m, accounts::jwks)),
        documented::<__path_challenge>(|m| on(m, attest::challenge)),
        documented::<__path_attest>(|m| on(m, attest::attest)),
        // Tagged as when they lived in the crate's root.
        tagged::<__path_healthz>("crate", |m| on(m, health::healthz)),
        tagged::<__path_readyz>("crate", |m| on(m, health::readyz)),
        Binding {
            path: routes::GATEWAY_JWKS.into(),
            handler: on(MethodFilter::GET, gateway_jwks),
            doc: None,
        },
        Binding {
            path: routes::OPENAPI.into(),
            handler: on(MethodFilter::GET, openapi_json),
            doc: None,
        },
    ]
}

/// The OpenAPI document of the public listener, its operations from [`bindings`].
pub fn document() -> utoipa::openapi::OpenApi {
    let paths = bindings()
        .into_iter()
        .filter_map(|b| b.doc)
        .fold(PathsBuilder::new(), |paths, doc| {
            let (path, method, mut operation) = (doc.operation)();
            if operation.tags.as_ref().is_none_or(Vec::is_empty) {
                operation.tags = Some(vec![doc.tag]);
            }
            paths.path(path, PathItem::new(method, operation))
        })
        .build();
    openapi::document(paths)
}

/// `GET /openapi.json`.
async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(document())
}

/// `GET /.well-known/moat-gateway-jwks.json`: the key upstreams check forwarded requests with.
async fn gateway_jwks(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    axum::Json(state.gateway.jwks())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::ENDPOINTS;

    #[test]
    fn every_endpoint_of_the_table_is_bound_once_and_nothing_else_is() {
        let bound = bindings();
        for e in ENDPOINTS {
            let n = bound.iter().filter(|b| b.path == e.path).count();
            assert_eq!(n, 1, "{} is bound {n} times", e.path);
        }
        for b in &bound {
            let e =
                routes::find(&b.path).unwrap_or_else(|| panic!("{} is not in the table", b.path));
            assert_eq!(e.documented, b.doc.is_some(), "{}: documented", b.path);
        }
    }
}
