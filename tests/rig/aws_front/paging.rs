//! ECR's paging of `DescribeRepositories`, `DescribeImages` and
//! `ListImages`, which moto ignores: moto drops `maxResults`/`nextToken` and
//! answers the whole list, so without this no test would ever see a second
//! page. The front sends moto the request less those two, takes the whole
//! list (`repositories`, `imageDetails`, `imageIds`, in moto's order, stable
//! across calls) and answers one page of it.
//!
//! What ECR documents, and the front does (API Reference:
//! <https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_DescribeImages.html>,
//! `API_ListImages.html`, `API_DescribeRepositories.html`):
//! - `maxResults` absent: "returns up to 100 results and a nextToken value,
//!   if applicable"; present: "Valid Range: Minimum value of 1. Maximum
//!   value of 1000." ECR refuses a member outside its constraint with
//!   `InvalidParameterException` "Invalid parameter at '<member>' failed to
//!   satisfy constraint: 'Member must have value less than or equal to
//!   1000'" (ECR's text for `maxResults`, as its registry API passes it
//!   on: <https://github.com/andrey-pohilko/registry-cli/issues/79>).
//! - `nextToken` is "an opaque identifier"; `null`/absent on the last page.
//! - With `repositoryNames` (DescribeRepositories) or `imageIds`
//!   (DescribeImages) "you can't use this option" (either of the two). The
//!   ops declare `InvalidParameterException` ("The specified parameter is
//!   invalid") as their only parameter error, so that is the answer; its
//!   message here is the front's own (ECR documents none). Without paging
//!   parameters such a request passes to moto unchanged (no paging).
//! - A malformed `nextToken` gets `InvalidParameterException` (what
//!   fakecloud found real ECR answers:
//!   <https://github.com/faiscadev/fakecloud/pull/1397>); the message is
//!   again the front's own. The front's tokens are base64 of the offset and
//!   a hash of the operation and the request's other parameters, so a token
//!   from another listing is refused like garbage.
//! - ECR may return fewer results than `maxResults` (callers must follow
//!   `nextToken` regardless): [`AwsFrontOptions::ecr_page_cap`] cuts every
//!   page at that size, so a test with small data still spans pages.
//!
//! [`AwsFrontOptions::ecr_page_cap`]: super::AwsFrontOptions::ecr_page_cap

use std::sync::atomic::Ordering;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::{aws_json, made, FrontShared};
use crate::wire::{exchange, read_body, Head, Upstream};

/// ECR's page when `maxResults` is absent.
pub(crate) const DEFAULT_PAGE: usize = 100;
/// ECR's largest `maxResults`.
pub(crate) const MAX_PAGE: usize = 1000;
pub(crate) const INVALID_TOKEN_MESSAGE: &str =
    "Invalid parameter at 'nextToken': not a token this listing was given";

/// The operations ECR pages: (X-Amz-Target, the list in the answer, the
/// selection that excludes paging).
const PAGED: [(&str, &str, Option<&str>); 3] = [
    (
        "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories",
        "repositories",
        Some("repositoryNames"),
    ),
    (
        "AmazonEC2ContainerRegistry_V20150921.DescribeImages",
        "imageDetails",
        Some("imageIds"),
    ),
    (
        "AmazonEC2ContainerRegistry_V20150921.ListImages",
        "imageIds",
        None,
    ),
];

/// What to do with a listing request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Not for paging (a selection, an unreadable body): moto answers it.
    Pass,
    /// ECR's 400 `InvalidParameterException` with this message.
    Refuse(String),
    Page(PageRequest),
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PageRequest {
    /// The request as moto gets it: without `maxResults` and `nextToken`.
    pub moto_body: Vec<u8>,
    list: &'static str,
    offset: usize,
    size: usize,
    /// Binds tokens to this operation and these parameters.
    scope: String,
}

/// How the front answers the request `body` to `target`; `cap` is
/// [`AwsFrontOptions::ecr_page_cap`](super::AwsFrontOptions::ecr_page_cap).
pub(crate) fn plan(target: &str, body: &[u8], cap: Option<usize>) -> Plan {
    let Some(&(_, list, selection)) = PAGED.iter().find(|(t, _, _)| *t == target) else {
        return Plan::Pass;
    };
    let Ok(Value::Object(mut request)) = serde_json::from_slice::<Value>(body) else {
        return Plan::Pass;
    };
    let max_results = request.remove("maxResults").filter(|v| !v.is_null());
    let token = request.remove("nextToken").filter(|v| !v.is_null());
    let selected = selection
        .and_then(|s| request.get(s))
        .is_some_and(|v| !v.is_null());
    if selected {
        return match (&max_results, &token) {
            (None, None) => Plan::Pass,
            _ => Plan::Refuse(format!(
                "Invalid parameter: maxResults and nextToken cannot be used with {}",
                selection.unwrap_or_default()
            )),
        };
    }
    let asked = match max_results {
        None => DEFAULT_PAGE,
        Some(v) => match v.as_i64() {
            Some(n) if n < 1 => return Plan::Refuse(constraint("greater than or equal to 1")),
            Some(n) if n as usize > MAX_PAGE => {
                return Plan::Refuse(constraint("less than or equal to 1000"))
            }
            Some(n) => n as usize,
            None => return Plan::Refuse(constraint("an integer")),
        },
    };
    let rest = Value::Object(request);
    let scope = scope_of(target, &rest);
    let offset = match token {
        None => 0,
        Some(Value::String(t)) => match offset_in(&t, &scope) {
            Some(o) => o,
            None => return Plan::Refuse(INVALID_TOKEN_MESSAGE.into()),
        },
        Some(_) => return Plan::Refuse(INVALID_TOKEN_MESSAGE.into()),
    };
    Plan::Page(PageRequest {
        moto_body: rest.to_string().into_bytes(),
        list,
        offset,
        size: cap.map_or(asked, |c| asked.min(c.max(1))),
        scope,
    })
}

fn constraint(what: &str) -> String {
    format!("Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have value {what}'")
}

/// A short hash of the operation and its parameters, key order aside.
fn scope_of(target: &str, rest: &Value) -> String {
    let text = format!("{target}\n{}", canonical(rest));
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    hex::encode(&digest.as_ref()[..8])
}

/// `value` as JSON with every object's keys sorted.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::from(k.as_str()), canonical(&map[*k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

fn token_for(offset: usize, scope: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("rig-page:{offset}:{scope}"))
}

/// The offset a token of this scope carries; None for any other string.
fn offset_in(token: &str, scope: &str) -> Option<usize> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (offset, their_scope) = text.strip_prefix("rig-page:")?.split_once(':')?;
    (their_scope == scope).then(|| offset.parse().ok())?
}

impl PageRequest {
    /// The page of moto's whole answer `moto_answer` (JSON) this request
    /// asked for, moto's other fields kept; None if it is not JSON.
    pub(crate) fn page_of(&self, moto_answer: &[u8]) -> Option<Vec<u8>> {
        let mut answer: Map<String, Value> = serde_json::from_slice(moto_answer).ok()?;
        let all = match answer.remove(self.list) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        // Entries may have gone since the token was made: then an empty last page.
        let start = self.offset.min(all.len());
        let end = (start + self.size).min(all.len());
        let more = end < all.len();
        let page: Vec<Value> = all.into_iter().skip(start).take(end - start).collect();
        answer.insert(self.list.into(), Value::Array(page));
        answer.remove("nextToken");
        if more {
            answer.insert("nextToken".into(), token_for(end, &self.scope).into());
        }
        Some(Value::Object(answer).to_string().into_bytes())
    }
}

impl FrontShared {
    /// The front's answer to an ECR listing, or None when moto answers it
    /// as sent ([`Plan::Pass`]).
    pub(super) fn ecr_page(&self, head: &Head, body: &[u8], target: &str) -> Option<Upstream> {
        let request = match plan(target, body, self.opts.ecr_page_cap) {
            Plan::Pass => return None,
            Plan::Refuse(message) => return Some(invalid_parameter(&message)),
            Plan::Page(request) => request,
        };
        // Without Accept-Encoding moto's answer is plain JSON to cut.
        let moto = match exchange(
            &self.moto,
            head,
            &request.moto_body,
            &["expect", "accept-encoding"],
            None,
        ) {
            Ok(resp) => resp,
            Err(e) => {
                let msg = format!("rig AWS front: moto failed: {e}");
                return Some(made("502 Bad Gateway", &[], msg.into_bytes()));
            }
        };
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        if moto.status() != 200 {
            return Some(moto); // RepositoryNotFoundException and the like, as moto says
        }
        let answer_head = parse_answer_head(&moto.head);
        // moto closes after its answer, so an unchunked body is all there.
        let whole = match answer_head.chunked() {
            true => read_body(&mut &moto.body[..], &answer_head).ok(),
            false => Some(moto.body.clone()),
        };
        let Some(page) = whole.and_then(|w| request.page_of(&w)) else {
            return Some(moto); // not JSON: nothing to cut, pass it on
        };
        let request_id = answer_head
            .header("x-amzn-requestid")
            .unwrap_or("rig-aws-front-paged")
            .to_string();
        Some(made("200 OK", &aws_json(request_id), page))
    }
}

/// ECR's 400 for a parameter it refuses, shaped as the front's other refusals.
fn invalid_parameter(message: &str) -> Upstream {
    let answer =
        serde_json::json!({"__type": "InvalidParameterException", "message": message}).to_string();
    made(
        "400 Bad Request",
        &aws_json("rig-aws-front-refused".into()),
        answer.into_bytes(),
    )
}

/// moto's answer head as a [`Head`], to read its body's framing (chunked or not).
fn parse_answer_head(raw: &[u8]) -> Head {
    let text = String::from_utf8_lossy(raw);
    let headers = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Head {
        method: String::new(),
        target: String::new(),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPOS: &str = "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories";
    const IMAGES: &str = "AmazonEC2ContainerRegistry_V20150921.DescribeImages";
    const LIST: &str = "AmazonEC2ContainerRegistry_V20150921.ListImages";

    fn body(v: Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    fn moto_repositories(n: usize) -> Vec<u8> {
        let repos: Vec<Value> = (0..n)
            .map(|i| serde_json::json!({"repositoryName": format!("r{i:03}")}))
            .collect();
        body(serde_json::json!({"repositories": repos, "failures": []}))
    }

    fn page_request(plan: Plan) -> PageRequest {
        match plan {
            Plan::Page(p) => p,
            other => panic!("not a page: {other:?}"),
        }
    }

    /// Every page of a DescribeRepositories listing of `n` repositories:
    /// (names on each page, the bodies sent).
    fn walk(n: usize, first: Value, cap: Option<usize>) -> (Vec<Vec<String>>, Vec<Value>) {
        let (mut pages, mut sent) = (Vec::new(), Vec::new());
        let mut request = first;
        loop {
            sent.push(request.clone());
            let page = page_request(plan(REPOS, &body(request.clone()), cap));
            let answer: Value =
                serde_json::from_slice(&page.page_of(&moto_repositories(n)).unwrap()).unwrap();
            assert_eq!(
                answer["failures"],
                serde_json::json!([]),
                "moto's other fields kept"
            );
            let names = answer["repositories"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["repositoryName"].as_str().unwrap().to_string())
                .collect();
            pages.push(names);
            match answer.get("nextToken") {
                Some(t) => request["nextToken"] = t.clone(),
                None => return (pages, sent),
            }
        }
    }

    #[test]
    fn given_250_repositories_and_no_max_results_when_paged_then_ecr_default_pages_of_100_in_moto_order(
    ) {
        let (pages, sent) = walk(250, serde_json::json!({}), None);
        let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
        assert_eq!(sizes, [100, 100, 50]);
        let all: Vec<String> = pages.concat();
        let expected: Vec<String> = (0..250).map(|i| format!("r{i:03}")).collect();
        assert_eq!(all, expected);
        assert!(sent[0].get("nextToken").is_none() && sent[1].get("nextToken").is_some());
        // moto is never told about paging.
        let request = page_request(plan(REPOS, &body(sent[1].clone()), None));
        assert_eq!(request.moto_body, b"{}");
    }

    #[test]
    fn given_a_page_cap_when_max_results_is_larger_then_pages_are_cut_at_the_cap() {
        let (pages, _) = walk(25, serde_json::json!({"maxResults": 1000}), Some(7));
        let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
        assert_eq!(sizes, [7, 7, 7, 4]);
        let (pages, _) = walk(25, serde_json::json!({"maxResults": 5}), Some(7));
        assert_eq!(pages.len(), 5, "a smaller maxResults still wins");
        let (pages, _) = walk(0, serde_json::json!({}), Some(7));
        assert_eq!(
            pages,
            [Vec::<String>::new()],
            "an empty list: one page, no token"
        );
    }

    #[test]
    fn given_max_results_outside_1_to_1000_when_planned_then_refused_as_ecr_does() {
        for (max, bound) in [
            (0, "greater than or equal to 1"),
            (1001, "less than or equal to 1000"),
        ] {
            match plan(
                IMAGES,
                &body(serde_json::json!({"repositoryName": "a", "maxResults": max})),
                None,
            ) {
                Plan::Refuse(m) => assert!(m.contains("'maxResults'") && m.contains(bound), "{m}"),
                other => panic!("{max}: {other:?}"),
            }
        }
        for ok in [1, 1000] {
            let p = page_request(plan(
                LIST,
                &body(serde_json::json!({"repositoryName": "a", "maxResults": ok})),
                None,
            ));
            assert_eq!(p.size, ok);
        }
    }

    #[test]
    fn given_a_token_from_another_listing_or_garbage_when_sent_then_invalid_parameter() {
        let first = page_request(plan(
            IMAGES,
            &body(serde_json::json!({"repositoryName": "a", "maxResults": 2})),
            None,
        ));
        let answer: Value = serde_json::from_slice(
            &first
                .page_of(&body(serde_json::json!({"imageDetails": [1, 2, 3]})))
                .unwrap(),
        )
        .unwrap();
        let token = answer["nextToken"].clone();
        assert_eq!(answer["imageDetails"], serde_json::json!([1, 2]));
        // The same listing (maxResults may change between pages) goes on...
        let next = page_request(plan(
            IMAGES,
            &body(serde_json::json!({"repositoryName": "a", "nextToken": token})),
            None,
        ));
        assert_eq!(next.offset, 2);
        // ... another repository, filter or operation may not use it.
        let refused = [
            (
                IMAGES,
                serde_json::json!({"repositoryName": "b", "nextToken": token}),
            ),
            (
                IMAGES,
                serde_json::json!({"repositoryName": "a", "filter": {"tagStatus": "TAGGED"}, "nextToken": token}),
            ),
            (
                LIST,
                serde_json::json!({"repositoryName": "a", "nextToken": token}),
            ),
            (
                IMAGES,
                serde_json::json!({"repositoryName": "a", "nextToken": "garbage"}),
            ),
            (
                IMAGES,
                serde_json::json!({"repositoryName": "a", "nextToken": ""}),
            ),
            (
                IMAGES,
                serde_json::json!({"repositoryName": "a", "nextToken": 7}),
            ),
        ];
        for (target, request) in refused {
            assert_eq!(
                plan(target, &body(request.clone()), None),
                Plan::Refuse(INVALID_TOKEN_MESSAGE.into()),
                "{request}"
            );
        }
    }

    #[test]
    fn given_a_selection_when_paging_parameters_come_with_it_then_refused_else_moto_answers() {
        let names = serde_json::json!({"repositoryNames": ["a"], "maxResults": 10});
        assert!(
            matches!(plan(REPOS, &body(names), None), Plan::Refuse(m) if m.contains("repositoryNames"))
        );
        let ids = serde_json::json!({"repositoryName": "a", "imageIds": [{"imageTag": "v1"}], "nextToken": "x"});
        assert!(
            matches!(plan(IMAGES, &body(ids), None), Plan::Refuse(m) if m.contains("imageIds"))
        );
        assert_eq!(
            plan(
                REPOS,
                &body(serde_json::json!({"repositoryNames": ["a"]})),
                None
            ),
            Plan::Pass
        );
        assert_eq!(
            plan(
                "AmazonEC2ContainerRegistry_V20150921.CreateRepository",
                b"{}",
                None
            ),
            Plan::Pass
        );
        assert_eq!(plan(REPOS, b"not json", None), Plan::Pass);
    }
}
