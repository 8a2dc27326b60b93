// A backend behind Moat's gateway that accepts only requests Moat signed (sign_upstream = true).
// Java 17+, JDK only:
//   MOAT_JWKS_URL=https://moat.example/.well-known/moat-gateway-jwks.json PORT=3000 java VerifyMoat.java
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.security.KeyFactory;
import java.security.MessageDigest;
import java.security.PublicKey;
import java.security.Signature;
import java.security.spec.X509EncodedKeySpec;
import java.time.Instant;
import java.util.Base64;
import java.util.HexFormat;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public class VerifyMoat {
    static PublicKey gatewayKey(String jwksUrl) throws Exception {
        String jwks = HttpClient.newHttpClient()
            .send(HttpRequest.newBuilder(URI.create(jwksUrl)).build(), HttpResponse.BodyHandlers.ofString()).body();
        Matcher m = Pattern.compile("\"x\"\\s*:\\s*\"([^\"]+)\"").matcher(jwks);
        if (!m.find()) throw new IllegalStateException("no key in JWKS");
        // An Ed25519 SubjectPublicKeyInfo is a fixed 12-byte prefix followed by the 32-byte key.
        byte[] prefix = HexFormat.of().parseHex("302a300506032b6570032100");
        byte[] x = Base64.getUrlDecoder().decode(m.group(1));
        byte[] spki = new byte[prefix.length + x.length];
        System.arraycopy(prefix, 0, spki, 0, prefix.length);
        System.arraycopy(x, 0, spki, prefix.length, x.length);
        return KeyFactory.getInstance("Ed25519").generatePublic(new X509EncodedKeySpec(spki));
    }

    // True if Moat signed this request, recently, over this body.
    static boolean verifyMoat(PublicKey key, HttpExchange ex, byte[] body) throws Exception {
        String input = ex.getRequestHeaders().getFirst("Signature-Input");
        String signature = ex.getRequestHeaders().getFirst("Signature");
        if (input == null || signature == null || !input.startsWith("moat=(")) return false;
        String params = input.substring("moat=".length());
        if (!params.contains(";keyid=\"moat-gateway\"")) return false;
        String[] names = params.substring(1, params.indexOf(')')).replace("\"", "").split(" ");
        Matcher created = Pattern.compile(";created=(\\d+)").matcher(params);
        if (!created.find() || Math.abs(Instant.now().getEpochSecond() - Long.parseLong(created.group(1))) > 60) return false;
        URI uri = ex.getRequestURI();
        StringBuilder base = new StringBuilder();
        boolean digestCovered = false;
        for (String n : names) {
            String v = switch (n) {
                case "@method" -> ex.getRequestMethod();
                case "@authority" -> ex.getRequestHeaders().getFirst("Host");
                case "@path" -> uri.getRawPath();
                case "@query" -> "?" + (uri.getRawQuery() == null ? "" : uri.getRawQuery());
                default -> ex.getRequestHeaders().getFirst(n);
            };
            digestCovered |= n.equals("content-digest");
            base.append('"').append(n).append("\": ").append(v).append('\n');
        }
        base.append("\"@signature-params\": ").append(params);
        Matcher sig = Pattern.compile("^moat=:(.*):$").matcher(signature);
        if (!sig.find()) return false;
        Signature verifier = Signature.getInstance("Ed25519");
        verifier.initVerify(key);
        verifier.update(base.toString().getBytes(StandardCharsets.UTF_8));
        if (!verifier.verify(Base64.getDecoder().decode(sig.group(1)))) return false;
        String sent = ex.getRequestHeaders().getFirst("Content-Digest");
        if (body.length > 0 || sent != null) {
            String digest = "sha-256=:" + Base64.getEncoder().encodeToString(MessageDigest.getInstance("SHA-256").digest(body)) + ":";
            if (!digestCovered || !digest.equals(sent)) return false;
        }
        return true; // Moat-Device (and Moat-User) can now be trusted
    }

    public static void main(String[] args) throws Exception {
        PublicKey key = gatewayKey(System.getenv("MOAT_JWKS_URL"));
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", Integer.parseInt(System.getenv("PORT"))), 0);
        server.createContext("/", ex -> {
            try {
                byte[] body = ex.getRequestBody().readAllBytes();
                boolean ok = verifyMoat(key, ex, body);
                String device = ok ? "\"" + ex.getRequestHeaders().getFirst("Moat-Device") + "\"" : "null";
                byte[] out = ("{\"verified\":" + ok + ",\"device\":" + device + ",\"by\":\"java\"}").getBytes(StandardCharsets.UTF_8);
                ex.getResponseHeaders().set("Content-Type", "application/json");
                ex.sendResponseHeaders(ok ? 200 : 401, out.length);
                ex.getResponseBody().write(out);
            } catch (Exception e) {
                ex.sendResponseHeaders(500, -1);
            } finally {
                ex.close();
            }
        });
        server.start();
        System.out.println("listening");
    }
}
