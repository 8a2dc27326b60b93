// The generated Kotlin bindings on the JVM, through JNA, against real Moat servers.
// crates/ffi/tests/bindings.rs compiles this with the generated uniffi/moat/moat.kt and runs
// it with two server URLs: one in `dynamic` mode, one in `otp` mode.
// Prints one line per case and "kotlin: N passed, N failed"; exits 1 if any case failed.

import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import kotlin.system.exitProcess
import kotlinx.coroutines.runBlocking
import uniffi.moat.AuthMode
import uniffi.moat.CallOptions
import uniffi.moat.CredentialKind
import uniffi.moat.HttpHeader
import uniffi.moat.MoatClient
import uniffi.moat.MoatException

private var passed = 0
private val failed = mutableListOf<String>()

private fun case(name: String, body: () -> Unit) {
    try {
        body()
        passed++
        println("ok   $name")
    } catch (e: Throwable) {
        failed += name
        println("FAIL $name: $e")
        e.printStackTrace(System.out)
    }
}

private fun expect(condition: Boolean, what: () -> String) {
    if (!condition) throw AssertionError(what())
}

private inline fun <reified E : Throwable> expectThrows(what: String, block: () -> Unit): E {
    try {
        block()
    } catch (e: Throwable) {
        if (e is E) return e
        throw AssertionError("$what: expected ${E::class.simpleName}, got $e")
    }
    throw AssertionError("$what: expected ${E::class.simpleName}, nothing thrown")
}

// The app's own HTTP stack (here the JDK's client; OkHttp or URLSession on a phone): the
// SDK only supplies the headers from signRequest.
private val http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build()

private fun send(method: String, url: String, headers: List<HttpHeader>, body: ByteArray?): HttpResponse<String> {
    val request = HttpRequest.newBuilder(URI.create(url))
    for (h in headers) request.header(h.name, h.value)
    val publisher = if (body == null) HttpRequest.BodyPublishers.noBody() else HttpRequest.BodyPublishers.ofByteArray(body)
    request.method(method, publisher)
    return http.send(request.build(), HttpResponse.BodyHandlers.ofString())
}

fun main(args: Array<String>) {
    require(args.size == 2) { "usage: MoatBindingsTest <dynamic-mode URL> <otp-mode URL>" }
    val dynamicBase = args[0]
    val otpBase = args[1]

    case("a new installation key signs offline (RFC 9421, ecdsa-p256-sha256)") {
        MoatClient("https://api.example.com").use { client ->
            val thumbprint = client.thumbprint()
            expect(thumbprint.length == 43) { "thumbprint $thumbprint" }
            val sent = listOf(HttpHeader("content-type", "application/json"))
            val body = """{"a":1}""".toByteArray()
            val url = "https://api.example.com/v1/device/echo?x=1"
            val headers = client.signRequest("POST", url, sent, body, AuthMode.INSTALLATION_SIGNATURE)
            expect(headers.map { it.name } == listOf("content-digest", "signature-input", "signature")) { "$headers" }
            expect(headers[0].value.startsWith("sha-256=:")) { headers[0].value }
            val input = headers[1].value
            expect(input.startsWith("moat=(\"@method\" \"@authority\" \"@path\" \"@query\" \"content-digest\");")) { input }
            expect(input.contains("keyid=\"$thumbprint\"") && input.contains("alg=\"ecdsa-p256-sha256\"")) { input }
            expect(headers[2].value.startsWith("moat=:")) { headers[2].value }
            val again = client.signRequest("POST", url, sent, body, AuthMode.INSTALLATION_SIGNATURE)
            expect(again[1].value != input) { "the nonce did not change" }
            val restored = MoatClient.fromStateJson(client.stateJson())
            expect(restored.thumbprint() == thumbprint) { "restored key differs" }
            restored.close()
        }
    }

    case("errors are typed, with the problem fields") {
        expectThrows<MoatException.Invalid>("non-http URL") { MoatClient("ftp://example.com") }
        expectThrows<MoatException.Invalid>("bad saved state") { MoatClient.fromStateJson("{}") }
        MoatClient("https://api.example.com").use { client ->
            expectThrows<MoatException.Credential>("signing before enrollment") {
                client.signRequest("GET", "/v1/device", listOf(), null)
            }
            expectThrows<MoatException.Invalid>("another origin") {
                client.signRequest("GET", "https://elsewhere.example/v1/device", listOf(), null, AuthMode.INSTALLATION_SIGNATURE)
            }
            expectThrows<MoatException.Credential>("encryption without a client credential") { client.encryptJson("{}") }
        }
    }

    case("dynamic mode: enrollAndFetch, call, a request sent by the app's own HTTP client, restore") {
        runBlocking<Unit> {
            val client = MoatClient(dynamicBase)
            val info = client.enrollAndFetch("kotlin-1", "android")
            expect(info.kind == CredentialKind.API_KEY && info.device != null) { "$info" }
            expect(client.deviceId() == "kotlin-1") { "${client.deviceId()}" }

            val device = client.call("GET", "/v1/device")
            expect(device.status.toInt() == 200) { String(device.body) }
            expect(String(device.body).contains(info.device!!)) { String(device.body) }

            val echo = client.call("POST", "/v1/device/echo", """{"hello":"kotlin"}""")
            expect(echo.status.toInt() == 200 && String(echo.body).contains("\"hello\":\"kotlin\"")) { String(echo.body) }

            val refused = client.call("GET", "/v1/device", options = CallOptions(auth = AuthMode.UNAUTHENTICATED))
            expect(refused.status.toInt() == 401 && refused.problemCode != null) { "$refused" }

            val keyHeader = client.signRequest("GET", "/v1/device", listOf(), null)
            expect(keyHeader.map { it.name } == listOf("moat-device-key")) { "$keyHeader" }
            val own = send("GET", "$dynamicBase/v1/device", keyHeader, null)
            expect(own.statusCode() == 200 && own.body().contains(info.device!!)) { "${own.statusCode()} ${own.body()}" }

            val signed = client.signRequest("GET", "$dynamicBase/v1/device", listOf(), null, AuthMode.INSTALLATION_SIGNATURE)
            val bySignature = send("GET", "$dynamicBase/v1/device", signed, null)
            expect(bySignature.statusCode() == 200) { "${bySignature.statusCode()} ${bySignature.body()}" }

            val restored = MoatClient.fromStateJson(client.stateJson())
            expect(restored.credential() == client.credential()) { "${restored.credential()}" }
            expect(restored.call("GET", "/v1/device").status.toInt() == 200) { "restored client refused" }
            restored.close()
            client.close()
        }
    }

    case("otp mode: enroll, mailbox, confirm, adopt; HMAC-signed JWE sent by the app's own HTTP client") {
        runBlocking<Unit> {
            val client = MoatClient(otpBase)
            val answer = client.enroll("kotlin-otp", "android")
            expect(answer.contains("\"channel\"")) { answer }
            val otp = client.readMailbox().first { it.kind == "enrollment_otp" }
            val code = Regex("\"code\":\"(\\d{6})\"").find(otp.json)!!.groupValues[1]
            val problem = expectThrows<MoatException.Problem>("wrong code") {
                client.confirm("kotlin-otp", if (code == "000000") "111111" else "000000")
            }
            expect(problem.code == "otp_invalid" && problem.status.toInt() == 401) { "$problem" }
            client.confirm("kotlin-otp", code)
            val item = client.readMailbox().first { it.kind == "client_credential" }
            val info = client.adoptCredential(item.json)
            expect(info.kind == CredentialKind.CLIENT_CREDENTIAL && info.clientId != null) { "$info" }

            val viaSdk = client.call("POST", "/v1/device/echo", """{"x":1}""", CallOptions(encrypt = true))
            expect(viaSdk.status.toInt() == 200 && String(viaSdk.body).contains("\"x\":1")) { String(viaSdk.body) }

            val jwe = client.encryptJson("""{"card":"4111"}""")
            val sent = listOf(HttpHeader("content-type", "application/jose"))
            val headers = client.signRequest("POST", "/v1/device/echo", sent, jwe.toByteArray())
            expect(headers.any { it.name == "signature-input" && it.value.contains("alg=\"hmac-sha256\"") }) { "$headers" }
            val own = send("POST", "$otpBase/v1/device/echo", sent + headers, jwe.toByteArray())
            expect(own.statusCode() == 200 && own.body().contains("\"card\":\"4111\"")) { "${own.statusCode()} ${own.body()}" }

            val tampered = send("POST", "$otpBase/v1/device/echo", sent + headers, client.encryptJson("""{"card":"0000"}""").toByteArray())
            expect(tampered.statusCode() == 400 || tampered.statusCode() == 401) { "tampered body: ${tampered.statusCode()}" }
            client.close()
        }
    }

    println("kotlin: $passed passed, ${failed.size} failed")
    exitProcess(if (failed.isEmpty()) 0 else 1)
}
