/**
 * The CSR of an order (AutoApplyOrder's `csr`, CONTRACT §12): PKCS#10, PEM
 * with or without its armour, parsed and signature-checked by @peculiar/x509
 * over the runtime's WebCrypto (never a hand-written ASN.1 parser). Keys:
 * RSA of at least 2048 bits, EC on P-256, P-384 or P-521. The CN and the SAN
 * dNSNames (and iPAddresses, which the domain rules then refuse) are the names.
 */
import type * as X509 from '@peculiar/x509';
import type * as Asn1js from 'asn1js';

interface Modules {
  x509: typeof X509;
  asn1js: typeof Asn1js;
}

/**
 * @peculiar/x509 and its ASN.1 stack (a few MiB of heap) are loaded by the first CSR checked, not at start:
 * most processes — a cluster's primary, and API processes until an AutoApplyOrder — never parse one (issue 20).
 */
let loaded: Promise<Modules> | undefined;
function modules(): Promise<Modules> {
  loaded ??= Promise.all([import('@peculiar/x509'), import('asn1js')]).then(([x509, asn1js]) => {
    x509.cryptoProvider.set(globalThis.crypto);
    return { x509, asn1js };
  });
  return loaded;
}

export const MIN_RSA_BITS = 2048;
const EC_CURVES = new Set(['P-256', 'P-384', 'P-521']);
type KeyAlgorithm = { name: string; modulusLength?: number; namedCurve?: string };
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

export type CsrCheck =
  | { ok: true; names: string[]; pem: string }
  | { ok: false; reason: 'syntax' | 'signature' | 'key' | 'no-names' };

function requestOf(m: Modules, text: string): X509.Pkcs10CertificateRequest | undefined {
  const trimmed = text.trim();
  try {
    if (trimmed.includes('-----BEGIN')) {
      if (!/^-----BEGIN (NEW )?CERTIFICATE REQUEST-----[\s\S]+-----END (NEW )?CERTIFICATE REQUEST-----$/.test(trimmed)) return undefined;
      const body = trimmed.replace(/-----(BEGIN|END) (NEW )?CERTIFICATE REQUEST-----/g, '');
      return requestOf(m, body);
    }
    const compact = trimmed.replace(/\s+/g, '');
    // Padding only at the end: node's decoder stops at a `=`, so a second request after a padded first one
    // (two PEM blocks) would otherwise be dropped without a word.
    if (!BASE64.test(compact)) return undefined;
    const der = Buffer.from(compact, 'base64');
    if (der.length === 0 || !oneDerValue(m.asn1js, der)) return undefined;
    return new m.x509.Pkcs10CertificateRequest(der);
  } catch {
    return undefined;
  }
}

/**
 * Whether `der` is exactly one DER value, nothing after it. @peculiar/x509 parses the first value and keeps the
 * whole input as the request's bytes, so bytes appended to a CSR (or a second CSR) would be stored and handed
 * on as part of the order's CSR. asn1js (the ASN.1 reader under @peculiar/x509) says where the value ends.
 */
function oneDerValue(asn1js: typeof Asn1js, der: Buffer): boolean {
  const { offset } = asn1js.fromBER(new Uint8Array(der.buffer, der.byteOffset, der.byteLength));
  return offset === der.byteLength;
}

function keyAcceptable(algorithm: KeyAlgorithm): boolean {
  if (algorithm.name === 'RSASSA-PKCS1-v1_5' || algorithm.name === 'RSA-PSS') return (algorithm.modulusLength ?? 0) >= MIN_RSA_BITS;
  if (algorithm.name === 'ECDSA') return EC_CURVES.has(algorithm.namedCurve ?? '');
  return false;
}

/** Parses, checks the signature and the key, and returns the names, CN first, without repeats (case-insensitive). */
export async function checkCsr(text: string): Promise<CsrCheck> {
  const m = await modules();
  const { x509 } = m;
  const csr = requestOf(m, text);
  if (!csr) return { ok: false, reason: 'syntax' };
  let algorithm: KeyAlgorithm;
  try {
    algorithm = csr.publicKey.algorithm as typeof algorithm;
    if (!keyAcceptable(algorithm)) return { ok: false, reason: 'key' };
    if (!(await csr.verify())) return { ok: false, reason: 'signature' };
  } catch {
    // A key or signature algorithm WebCrypto does not know cannot be verified.
    return { ok: false, reason: 'signature' };
  }
  const names: string[] = [];
  const add = (name: string) => {
    if (!names.some((n) => n.toLowerCase() === name.toLowerCase())) names.push(name);
  };
  try {
    for (const cn of csr.subjectName.getField('CN')) add(cn);
    const san = csr.getExtension('2.5.29.17');
    const items = san instanceof x509.SubjectAlternativeNameExtension ? san.names.items : [];
    for (const item of items) if (item.type === 'dns' || item.type === 'ip') add(item.value);
  } catch {
    return { ok: false, reason: 'syntax' };
  }
  if (names.length === 0) return { ok: false, reason: 'no-names' };
  return { ok: true, names, pem: csr.toString('pem') };
}
