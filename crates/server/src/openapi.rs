//! The OpenAPI 3.1 document of the public API, generated from the handlers (utoipa).

use utoipa::OpenApi;

/// The public API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Moat", description = "Enrollment, mailbox and protected requests (PROTOCOL.md sections 2-4)."),
    paths(
        crate::enroll::enroll,
        crate::enroll::confirm,
        crate::enroll::mailbox,
        crate::device::device,
        crate::device::echo,
    ),
    components(schemas(
        crate::enroll::EnrollRequest,
        crate::enroll::ConfirmRequest,
        crate::enroll::EnrollResponse,
        crate::enroll::MailboxResponse,
        crate::device::DeviceInfo,
        crate::device::Echo,
    ))
)]
pub struct ApiDoc;
