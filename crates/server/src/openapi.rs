//! The OpenAPI 3.1 document of the public API, generated from the handlers (utoipa).

use utoipa::OpenApi;

/// The public API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Moat",
        description = "Enrollment, mailbox, protected requests and accounts (PROTOCOL.md sections 2-4 and 6)."
    ),
    paths(
        crate::enroll::enroll,
        crate::enroll::confirm,
        crate::enroll::mailbox,
        crate::device::device,
        crate::device::echo,
        crate::accounts::register,
        crate::accounts::register_confirm,
        crate::accounts::resend,
        crate::accounts::reset,
        crate::accounts::reset_confirm,
        crate::accounts::token,
        crate::accounts::me,
        crate::attest::challenge,
        crate::attest::attest,
    ),
    components(schemas(
        crate::enroll::EnrollRequest,
        crate::enroll::ConfirmRequest,
        crate::enroll::EnrollResponse,
        crate::enroll::MailboxResponse,
        crate::device::DeviceInfo,
        crate::device::Echo,
        crate::accounts::RegisterRequest,
        crate::accounts::ConfirmRequest,
        crate::accounts::ResendRequest,
        crate::accounts::ResetRequest,
        crate::accounts::ResetConfirmRequest,
        crate::attest::ChallengeRequest,
        crate::attest::AttestRequest,
    ))
)]
pub struct ApiDoc;
