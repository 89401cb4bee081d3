//! `#[maniac::main]` and `#[maniac::test]`: tokio's attribute macros, for maniac.
//!
//! Both turn an `async fn` into a plain one that builds a runtime and `block_on`s the body. The
//! arguments are tokio's: `flavor = "multi_thread" | "current_thread"`, `worker_threads = N`
//! (multi-thread only), and `crate = "path"` for a renamed dependency. `main` defaults to the
//! multi-thread flavour and `test` to the current-thread one, as in tokio.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ItemFn, Lit, MetaNameValue, Token};

/// Runs an `async fn main` on a maniac runtime.
///
/// ```ignore
/// #[maniac::main(flavor = "multi_thread", worker_threads = 2)]
/// async fn main() {
///     maniac::spawn(async { println!("hello") }).await.unwrap();
/// }
/// ```
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args, item, Kind::Main).unwrap_or_else(|e| e.to_compile_error().into())
}

/// Runs an `async fn` test on a maniac runtime (current-thread unless told otherwise).
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args, item, Kind::Test).unwrap_or_else(|e| e.to_compile_error().into())
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Main,
    Test,
}

#[derive(Clone, Copy, PartialEq)]
enum Flavor {
    MultiThread,
    CurrentThread,
}

struct Config {
    flavor: Flavor,
    worker_threads: Option<(usize, Span)>,
    krate: syn::Path,
}

fn parse_config(args: TokenStream, kind: Kind) -> syn::Result<Config> {
    let mut config = Config {
        flavor: match kind {
            Kind::Main => Flavor::MultiThread,
            Kind::Test => Flavor::CurrentThread,
        },
        worker_threads: None,
        krate: syn::parse_quote!(::maniac),
    };
    let args = Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse(args)?;
    for arg in args {
        let name = arg
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        match name.as_str() {
            "flavor" => {
                config.flavor = match string_value(&arg.value)?.as_str() {
                    "multi_thread" => Flavor::MultiThread,
                    "current_thread" => Flavor::CurrentThread,
                    other => {
                        return Err(syn::Error::new(
                            arg.value.span(),
                            format!(
                                "unknown flavor {other:?}: use \"multi_thread\" or \"current_thread\""
                            ),
                        ));
                    }
                }
            }
            "worker_threads" => {
                let Expr::Lit(ExprLit {
                    lit: Lit::Int(count),
                    ..
                }) = &arg.value
                else {
                    return Err(syn::Error::new(
                        arg.value.span(),
                        "worker_threads takes an integer",
                    ));
                };
                let value: usize = count.base10_parse()?;
                if value == 0 {
                    return Err(syn::Error::new(
                        count.span(),
                        "worker_threads must be at least 1",
                    ));
                }
                config.worker_threads = Some((value, count.span()));
            }
            "crate" => config.krate = syn::parse_str(&string_value(&arg.value)?)?,
            _ => {
                return Err(syn::Error::new(
                    arg.path.span(),
                    "unknown argument: expected `flavor`, `worker_threads` or `crate`",
                ));
            }
        }
    }
    if let (Flavor::CurrentThread, Some((_, span))) = (config.flavor, config.worker_threads) {
        return Err(syn::Error::new(
            span,
            "worker_threads cannot be set with flavor = \"current_thread\"",
        ));
    }
    Ok(config)
}

fn string_value(expr: &Expr) -> syn::Result<String> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.value()),
        _ => Err(syn::Error::new(expr.span(), "expected a string literal")),
    }
}

fn expand(args: TokenStream, item: TokenStream, kind: Kind) -> syn::Result<TokenStream> {
    let mut function: ItemFn = syn::parse(item)?;
    let config = parse_config(args, kind)?;
    if function.sig.asyncness.take().is_none() {
        return Err(syn::Error::new(
            function.sig.fn_token.span(),
            "the `async` keyword is missing from the function declaration",
        ));
    }
    if kind == Kind::Main && function.sig.ident != "main" && !function.sig.inputs.is_empty() {
        return Err(syn::Error::new(
            function.sig.inputs.span(),
            "#[maniac::main] functions take no arguments",
        ));
    }
    let krate = &config.krate;
    let mut builder = match config.flavor {
        Flavor::MultiThread => quote! { #krate::runtime::Builder::new_multi_thread() },
        Flavor::CurrentThread => quote! { #krate::runtime::Builder::new_current_thread() },
    };
    if let Some((count, _)) = config.worker_threads {
        builder = quote! { #builder.worker_threads(#count) };
    }
    let body = &function.block;
    let output = match &function.sig.output {
        syn::ReturnType::Default => quote! { () },
        syn::ReturnType::Type(_, ty) => quote! { #ty },
    };
    let span = body.span();
    let new_body = quote_spanned! {span=>
        {
            let body = async move #body;
            #builder
                .enable_all()
                .build()
                .expect("maniac: failed to build the runtime")
                .block_on::<_>(body) as #output
        }
    };
    function.block = syn::parse2(new_body)?;
    let test_attr = match kind {
        Kind::Test => quote! { #[::core::prelude::v1::test] },
        Kind::Main => quote! {},
    };
    Ok(quote! {
        #test_attr
        #function
    }
    .into())
}
