//! Properties of turning requests into domain input, over generated requests: none panics, a
//! refusal is always INVALID_ARGUMENT naming only fields of the request (never INTERNAL, which a
//! check that failed without saying why would give), and what is accepted passed every rule.

use proptest::prelude::*;

use crate::domain::accounts::CreateAccount;
use crate::domain::error::DomainError;
use crate::domain::groups::CreateGroup;
use crate::domain::properties::text;
use crate::domain::users::CreateUser;
use crate::domain::validate;
use crate::proto;

/// An id as callers send it: a real UUID, or any text.
fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        text(40),
    ]
}

fn email() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.]{1,12}@[a-z]{1,8}\\.[a-z]{2,4}".prop_map(String::from),
        text(60),
    ]
}

/// A refusal that names only `fields` and says something about each.
fn refusal_names_only(err: &DomainError, fields: &[&str]) -> Result<(), TestCaseError> {
    match err {
        DomainError::InvalidArgument { violations, .. } => {
            prop_assert!(!violations.is_empty());
            for violation in violations {
                prop_assert!(
                    fields.contains(&violation.field.as_str()),
                    "unexpected field {:?}",
                    violation.field
                );
                prop_assert!(!violation.description.is_empty());
            }
            Ok(())
        }
        other => Err(TestCaseError::fail(format!(
            "not INVALID_ARGUMENT: {other:?}"
        ))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2000),
    ))]

    #[test]
    fn create_user_requests(
        account_id in id(),
        email in email(),
        display_name in text(140),
        role in -2..10i32,
        request_id in prop_oneof![Just(String::new()), text(110)],
    ) {
        let request = proto::CreateUserRequest {
            account_id: account_id.clone(),
            email: email.clone(),
            display_name,
            role,
            request_id,
        };
        match CreateUser::try_from(request) {
            Ok(input) => {
                prop_assert_eq!(input.account_id.to_string(), account_id.to_lowercase());
                prop_assert_eq!(Ok(input.email), validate::email(&email));
            }
            Err(err) => refusal_names_only(
                &err,
                &["account_id", "email", "display_name", "role", "request_id"],
            )?,
        }
    }

    #[test]
    fn create_account_requests(
        name in text(140),
        email in email(),
        display_name in text(140),
        max_users in prop_oneof![Just(0), any::<i32>()],
        max_groups in prop_oneof![Just(0), any::<i32>()],
        request_id in prop_oneof![Just(String::new()), text(110)],
    ) {
        let request = proto::CreateAccountRequest {
            name,
            administrator_email: email,
            administrator_display_name: display_name,
            limits: Some(proto::AccountLimits { max_users, max_groups }),
            request_id,
        };
        match CreateAccount::try_from(request) {
            Ok(input) => {
                prop_assert!(validate::name(&input.name).is_ok());
                prop_assert!(validate::name(&input.admin_display_name).is_ok());
                prop_assert!(input.max_users.is_none_or(|n| n >= 1));
                prop_assert!(input.max_groups.is_none_or(|n| n >= 0));
            }
            Err(err) => refusal_names_only(
                &err,
                &[
                    "name",
                    "administrator_email",
                    "administrator_display_name",
                    "limits.max_users",
                    "limits.max_groups",
                    "request_id",
                ],
            )?,
        }
    }

    #[test]
    fn create_group_requests(
        account_id in id(),
        name in prop_oneof!["[A-Za-z0-9 ]{0,70}".prop_map(String::from), text(70)],
        description in text(1030),
        request_id in prop_oneof![Just(String::new()), text(110)],
    ) {
        let request = proto::CreateGroupRequest { account_id, name, description, request_id };
        if let Err(err) = CreateGroup::try_from(request) {
            refusal_names_only(&err, &["account_id", "name", "description", "request_id"])?;
        }
    }
}
