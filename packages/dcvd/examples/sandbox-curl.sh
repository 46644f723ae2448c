#!/usr/bin/env bash
# The steps of examples/sandbox.test.ts with curl (docs/SANDBOX.md). Needs the
# sandbox's block of settings in $DCVD_SANDBOX_INFO (default sandbox.txt).
set -euo pipefail
info=${DCVD_SANDBOX_INFO:-sandbox.txt}
get() { sed -n "s/^$1: //p" "$info"; }
API=$(get 'api'); ADMIN=$(get 'admin api'); CA=$(get 'ca certificate')
LOGIN=$(get 'login'); PASSWORD=$(get 'password'); TOKEN=$(get 'admin token')
admin() { curl -sS --fail-with-body --cacert "$CA" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "$@"; }
# One field of a JSON answer, by a dotted path (0.code); node is there anyway.
field() { node -e 'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>{let v=JSON.parse(s);for(const k of process.argv[1].split("."))v=v[k];console.log(v)})' "$1"; }

# 1. a DNS contact, and the address list (the 24-hour rule remembers the offer)
admin -X POST "$ADMIN/v1/sandbox/dns" -d '{"name":"_validation-contactemail.example.net","type":"TXT","records":["hostmaster@example.net"]}' >/dev/null
curl -sS --cacert "$CA" "$API/products/!GetDCVEmailAddressList" \
  --data-urlencode "loginName=$LOGIN" --data-urlencode "loginPassword=$PASSWORD" \
  --data-urlencode 'domainName=example.net' --data-urlencode 'responseFormat=2' | grep -q '"hostmaster@example.net"'

# 2. the order and its first DCV email
ORDER=$((2000000 + RANDOM))
admin -X POST "$ADMIN/v1/orders" -d "{\"account\":\"$LOGIN\",\"domain\":\"example.net\",\"orderNumber\":$ORDER,\"dcvEmailAddress\":\"hostmaster@example.net\"}" >/dev/null

# 3. the email, from the mail viewer's API
for _ in $(seq 100); do
  MAIL=$(admin "$ADMIN/v1/sandbox/mail?order=$ORDER&limit=1")
  [ "$MAIL" != "[]" ] && break
  sleep 0.1
done
LINK=$(echo "$MAIL" | field 0.confirmationUrl); CODE=$(echo "$MAIL" | field 0.code)

# 4. confirm as a browser: the page's form token, then the form
CSRF=$(curl -sS --cacert "$CA" "$LINK" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -1)
curl -sS --fail --cacert "$CA" "$API/dcv/confirm" --data-urlencode "code=$CODE" --data-urlencode "csrf=$CSRF" --data-urlencode 'decision=approve' >/dev/null

# 5. the order's status
admin "$ADMIN/v1/orders/$ORDER" | field dcvStatus | grep -qx validated
echo "order $ORDER validated"
