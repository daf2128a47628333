#!/bin/bash
# Certificates for the TLS specs, made with openssl (EC P-256: quick).
#
#   spec/support/certs.sh DIR
#
# Makes in DIR, unless it already holds a fresh set made by this version of
# the script (then it does nothing):
#   ca.pem ca.key                   the test CA ("smtp test CA")
#   server.pem server.key           signed by it for DNS:localhost,
#                                   DNS:mx.example.test, IP:127.0.0.1, IP:::1
#   server.pin                      SHA-256 (hex) of server.pem's public key
#   expired.pem expired.key         signed by the CA, same names, valid only in 2020
#   wrongname.pem wrongname.key     signed by the CA for DNS:wrong.example.test only
#   selfsigned.pem selfsigned.key   self-signed, DNS:localhost, IP:127.0.0.1
#   selfsigned.pin                  SHA-256 (hex) of its public key
#   client.pem client.key           signed by the CA, for TLS clients (clientAuth)
#   other-ca.pem other-ca.key       a second CA that nothing else trusts
#   otherca-server.pem .key         signed by that one for localhost, 127.0.0.1, ::1
# Keys are unencrypted PKCS#8 PEM, certificates PEM. A set is made in a
# scratch directory and moved into place, so DIR is never half made.
set -euo pipefail

die() {
    echo "certs.sh: $*" >&2
    exit 1
}

[[ $# -eq 1 ]] || die "usage: $0 DIR"
command -v openssl >/dev/null || die "openssl is not installed (apt-get install openssl)"

dir=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
stamp=$(sha256sum < "$here/certs.sh" | cut -c1-16)
files=(ca.pem ca.key server.pem server.key server.pin expired.pem expired.key
       wrongname.pem wrongname.key selfsigned.pem selfsigned.key selfsigned.pin
       client.pem client.key other-ca.pem other-ca.key otherca-server.pem otherca-server.key)

# Fresh: made by this script as it is now, complete, and good for a week more.
fresh() {
    local f
    [[ -f $dir/ca.pem && $(cat "$dir/.stamp" 2>/dev/null) == "$stamp" ]] || return 1
    for f in "${files[@]}"; do [[ -s $dir/$f ]] || return 1; done
    for f in ca server wrongname selfsigned client other-ca otherca-server; do
        openssl x509 -checkend 604800 -noout -in "$dir/$f.pem" >/dev/null || return 1
    done
}

fresh && exit 0

mkdir -p "$(dirname "$dir")"
tmp=$(mktemp -d "${dir%/}.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

key() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null
    chmod 600 "$1.key"
}

# ext NAME SAN [EKU]: an extensions section for a leaf certificate.
ext() {
    cat > "$1.ext" <<EOF
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = ${3:-serverAuth}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
${2:+subjectAltName = $2}
EOF
}

# ca NAME CN: a self-signed CA certificate.
ca() {
    key "$1"
    cat > "$1.cnf" <<EOF
[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
CN = $2
O = smtp tests
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    openssl req -new -x509 -config "$1.cnf" -key "$1.key" -days 3650 -sha256 -out "$1.pem"
}

# leaf NAME CA CN SAN [EKU]: a certificate signed by CA, valid from now.
leaf() {
    key "$1"
    ext "$1" "$4" "${5:-}"
    openssl req -new -key "$1.key" -subj "/CN=$3/O=smtp tests" -out "$1.csr"
    openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -set_serial "0x$(openssl rand -hex 8)" \
        -days 825 -sha256 -extfile "$1.ext" -extensions leaf -out "$1.pem" 2>/dev/null
}

pin() {
    openssl x509 -in "$1.pem" -pubkey -noout | openssl pkey -pubin -outform der \
        | sha256sum | cut -d' ' -f1 > "$1.pin"
}

names="DNS:localhost, DNS:mx.example.test, IP:127.0.0.1, IP:::1"

ca ca "smtp test CA"
leaf server ca localhost "$names"
pin server
leaf wrongname ca wrong.example.test "DNS:wrong.example.test"
leaf client ca "smtp test client" "" clientAuth
ca other-ca "smtp other CA"
leaf otherca-server other-ca localhost "DNS:localhost, IP:127.0.0.1, IP:::1"

# Self-signed leaf: its own issuer, not a CA.
key selfsigned
ext selfsigned "DNS:localhost, IP:127.0.0.1"
sed -i 's/^authorityKeyIdentifier.*//' selfsigned.ext
{ printf '[req]\ndistinguished_name = dn\n[dn]\n'; cat selfsigned.ext; } > selfsigned.cnf
openssl req -new -x509 -config selfsigned.cnf -extensions leaf -key selfsigned.key \
    -subj "/CN=localhost/O=smtp tests self-signed" -days 825 -sha256 -out selfsigned.pem
pin selfsigned

# Expired: x509 -req cannot date a certificate in the past, "openssl ca" can.
key expired
ext expired "$names"
mkdir ca.db
: > ca.db/index.txt
cat > ca.cnf <<EOF
[ca]
default_ca = test
[test]
dir = $tmp/ca.db
database = \$dir/index.txt
new_certs_dir = \$dir
serial = \$dir/serial
certificate = $tmp/ca.pem
private_key = $tmp/ca.key
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[anything]
commonName = supplied
organizationName = optional
EOF
openssl rand -hex 8 > ca.db/serial
openssl req -new -key expired.key -subj "/CN=localhost/O=smtp tests expired" -out expired.csr
openssl ca -batch -notext -config ca.cnf -startdate 20200101000000Z -enddate 20201231235959Z \
    -extfile expired.ext -extensions leaf -in expired.csr -out expired.pem 2>/dev/null

for f in "${files[@]}"; do [[ -s $f ]] || die "did not make $f"; done
echo "$stamp" > .stamp

# Into place: the new set replaces an old one whole.
mkdir set
chmod 755 set
mv "${files[@]}" .stamp set/
rm -rf "$dir"
mv set "$dir"
