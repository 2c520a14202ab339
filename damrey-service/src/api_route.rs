//! A service's route table, declared once: its app registers the table, and its OpenAPI
//! test checks the document against the same table.

use actix_web::http::Method;
use actix_web::{Route, web};

/// One method on one path, and the handler that serves it.
#[derive(Debug, Clone, Copy)]
pub struct ApiRoute {
    /// The method, e.g. `"GET"`.
    pub method: &'static str,
    /// The path pattern, as actix-web matches it and OpenAPI writes it: `/workers/{name}`.
    pub path: &'static str,
    /// Attaches the handler to a route that already guards the method.
    pub handler: fn(Route) -> Route,
}

impl ApiRoute {
    /// `method` on `path`, served by `handler`.
    pub const fn new(
        method: &'static str,
        path: &'static str,
        handler: fn(Route) -> Route,
    ) -> Self {
        ApiRoute {
            method,
            path,
            handler,
        }
    }

    /// The method as actix-web's type.
    pub fn http_method(&self) -> Method {
        Method::from_bytes(self.method.as_bytes()).expect("an endpoint's method is a method name")
    }

    /// The route to register: the method's guard, then the handler.
    pub fn route(&self) -> Route {
        (self.handler)(web::method(self.http_method()))
    }
}
