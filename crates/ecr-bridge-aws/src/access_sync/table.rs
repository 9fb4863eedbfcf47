//! The users table: one user's rows (a consistent Query, every page) and the
//! whole table page by page (a consistent Scan) for the full reconcile. Only
//! the attributes access depends on are read.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use ecr_bridge::access::{AccountValue, Row};

use super::CallStats;
use crate::error::AwsError;

/// Attribute names in the table (Gen3's by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// The partition key.
    pub user_id: String,
    pub account_id: String,
    pub workspace_type: String,
    pub request_status: String,
    /// Names a row in warnings (Gen3's sort key).
    pub row_id: String,
}

impl Default for Attributes {
    fn default() -> Self {
        Attributes {
            user_id: "user_id".into(),
            account_id: "account_id".into(),
            workspace_type: "workspace_type".into(),
            request_status: "request_status".into(),
            row_id: "bmh_workspace_id".into(),
        }
    }
}

/// One page of a scan.
#[derive(Debug, Default)]
pub struct ScanPage {
    /// Rows with their user id.
    pub rows: Vec<(String, Row)>,
    /// Items without a usable user id (not a non-empty string).
    pub malformed: usize,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<HashMap<String, AttributeValue>>,
}

pub struct UsersTable {
    client: aws_sdk_dynamodb::Client,
    table: String,
    attributes: Attributes,
    /// `#p0, #p1, …` and what each stands for: placeholders, because
    /// attribute names may be reserved words, and deduplicated, because
    /// DynamoDB refuses a projection naming one attribute twice.
    projection: String,
    names: HashMap<String, String>,
    user_placeholder: String,
}

impl UsersTable {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        attributes: Attributes,
    ) -> Self {
        let mut names: HashMap<String, String> = HashMap::new();
        let mut placeholders = Vec::new();
        for attr in [
            &attributes.user_id,
            &attributes.account_id,
            &attributes.workspace_type,
            &attributes.request_status,
            &attributes.row_id,
        ] {
            if !names.values().any(|n| n == attr) {
                let p = format!("#p{}", names.len());
                names.insert(p.clone(), attr.clone());
                placeholders.push(p);
            }
        }
        UsersTable {
            client,
            table: table.into(),
            user_placeholder: "#p0".into(),
            projection: placeholders.join(", "),
            names,
            attributes,
        }
    }

    pub fn name(&self) -> &str {
        &self.table
    }

    /// Every row of one user, read consistently: the state to converge to
    /// must include every write acknowledged before this read.
    pub async fn user_rows(
        &self,
        user_id: &str,
        calls: &mut CallStats,
    ) -> Result<Vec<Row>, AwsError> {
        let mut rows = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            calls.query += 1;
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(format!("{} = :u", self.user_placeholder))
                .set_expression_attribute_names(Some(self.names.clone()))
                .expression_attribute_values(":u", AttributeValue::S(user_id.to_string()))
                .projection_expression(&self.projection)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("dynamodb:Query", e))?;
            rows.extend(out.items().iter().map(|item| self.row_of(item)));
            match out.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(rows),
            }
        }
    }

    /// One page of the whole table, or of segment `(index, total)` of a
    /// parallel scan. The caller loops while `next` is set: a page can be
    /// empty while more pages follow (Gen3 stopped there).
    pub async fn scan_page(
        &self,
        start: Option<HashMap<String, AttributeValue>>,
        limit: Option<i32>,
        segment: Option<(u32, u32)>,
        calls: &mut CallStats,
    ) -> Result<ScanPage, AwsError> {
        calls.scan += 1;
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .set_expression_attribute_names(Some(self.names.clone()))
            .projection_expression(&self.projection)
            .consistent_read(true)
            .set_limit(limit)
            .set_segment(segment.map(|(index, _)| index as i32))
            .set_total_segments(segment.map(|(_, total)| total as i32))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:Scan", e))?;
        let mut page = ScanPage::default();
        for item in out.items() {
            match item
                .get(&self.attributes.user_id)
                .and_then(|v| v.as_s().ok())
            {
                Some(user) if !user.is_empty() => page.rows.push((user.clone(), self.row_of(item))),
                _ => page.malformed += 1,
            }
        }
        page.next = out.last_evaluated_key().filter(|k| !k.is_empty()).cloned();
        Ok(page)
    }

    fn row_of(&self, item: &HashMap<String, AttributeValue>) -> Row {
        let a = &self.attributes;
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        Row {
            row_id: item.get(&a.row_id).and_then(|v| match v {
                AttributeValue::S(s) | AttributeValue::N(s) => Some(s.clone()),
                _ => None,
            }),
            account: item.get(&a.account_id).map(account_value),
            workspace_type: text(&a.workspace_type),
            request_status: text(&a.request_status),
        }
    }
}

fn account_value(v: &AttributeValue) -> AccountValue {
    match v {
        AttributeValue::S(s) => AccountValue::Text(s.clone()),
        AttributeValue::N(n) => AccountValue::Number(n.clone()),
        other => AccountValue::Other(type_name(other).to_string()),
    }
}

/// DynamoDB's name for an attribute's type, for warnings.
pub fn type_name(v: &AttributeValue) -> &'static str {
    match v {
        AttributeValue::B(_) => "B",
        AttributeValue::Bool(_) => "BOOL",
        AttributeValue::Bs(_) => "BS",
        AttributeValue::L(_) => "L",
        AttributeValue::M(_) => "M",
        AttributeValue::N(_) => "N",
        AttributeValue::Ns(_) => "NS",
        AttributeValue::Null(_) => "NULL",
        AttributeValue::S(_) => "S",
        AttributeValue::Ss(_) => "SS",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(attributes: Attributes) -> UsersTable {
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .build();
        UsersTable::new(aws_sdk_dynamodb::Client::from_conf(conf), "t", attributes)
    }

    #[test]
    fn given_gen3_attribute_names_when_projecting_then_one_placeholder_each_user_first() {
        let t = table(Attributes::default());
        assert_eq!(t.projection, "#p0, #p1, #p2, #p3, #p4");
        assert_eq!(t.names["#p0"], "user_id");
        assert_eq!(t.names["#p4"], "bmh_workspace_id");
    }

    #[test]
    fn given_an_attribute_named_twice_when_projecting_then_it_appears_once() {
        let t = table(Attributes {
            row_id: "user_id".into(),
            ..Attributes::default()
        });
        assert_eq!(t.projection, "#p0, #p1, #p2, #p3");
    }

    #[test]
    fn given_items_of_every_shape_when_read_then_rows_keep_what_access_needs() {
        let t = table(Attributes::default());
        let item: HashMap<String, AttributeValue> = [
            ("user_id".to_string(), AttributeValue::S("u@x.io".into())),
            (
                "bmh_workspace_id".to_string(),
                AttributeValue::N("7".into()),
            ),
            ("account_id".to_string(), AttributeValue::Bool(true)),
            (
                "workspace_type".to_string(),
                AttributeValue::S("Direct Pay".into()),
            ),
        ]
        .into();
        let row = t.row_of(&item);
        assert_eq!(row.row_id.as_deref(), Some("7"));
        assert_eq!(row.account, Some(AccountValue::Other("BOOL".into())));
        assert_eq!(row.workspace_type.as_deref(), Some("Direct Pay"));
        assert_eq!(row.request_status, None);
    }
}
