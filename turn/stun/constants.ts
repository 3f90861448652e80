/**
 * STUN (RFC 8489) and TURN (RFC 8656) numbers. Plain `as const` objects, not enums,
 * so the file runs under type stripping.
 */

export const MAGIC_COOKIE = 0x2112a442;
export const HEADER_LENGTH = 20;
/** XOR'd into the CRC-32 of FINGERPRINT (RFC 8489 §14.7): "STUN" in ASCII. */
export const FINGERPRINT_XOR = 0x5354554e;

export const Method = {
  Binding: 0x001,
  Allocate: 0x003,
  Refresh: 0x004,
  Send: 0x006,
  Data: 0x007,
  CreatePermission: 0x008,
  ChannelBind: 0x009,
} as const;

export const MessageClass = {
  Request: 0,
  Indication: 1,
  Success: 2,
  Error: 3,
} as const;
export type MessageClass = (typeof MessageClass)[keyof typeof MessageClass];

export const Attr = {
  MappedAddress: 0x0001,
  Username: 0x0006,
  MessageIntegrity: 0x0008,
  ErrorCode: 0x0009,
  UnknownAttributes: 0x000a,
  ChannelNumber: 0x000c,
  Lifetime: 0x000d,
  XorPeerAddress: 0x0012,
  Data: 0x0013,
  Realm: 0x0014,
  Nonce: 0x0015,
  XorRelayedAddress: 0x0016,
  RequestedAddressFamily: 0x0017,
  EvenPort: 0x0018,
  RequestedTransport: 0x0019,
  DontFragment: 0x001a,
  MessageIntegritySha256: 0x001c,
  PasswordAlgorithm: 0x001d,
  Userhash: 0x001e,
  XorMappedAddress: 0x0020,
  ReservationToken: 0x0022,
  Priority: 0x0024,
  UseCandidate: 0x0025,
  // Comprehension-optional (0x8000-0xFFFF): ignored when not understood.
  AdditionalAddressFamily: 0x8000,
  AddressErrorCode: 0x8001,
  PasswordAlgorithms: 0x8002,
  AlternateDomain: 0x8003,
  Icmp: 0x8004,
  Software: 0x8022,
  AlternateServer: 0x8023,
  Fingerprint: 0x8028,
  IceControlled: 0x8029,
  IceControlling: 0x802a,
} as const;

/**
 * Comprehension-required attributes this server understands. Any other type below
 * 0x8000 in a request earns 420 with UNKNOWN-ATTRIBUTES (RFC 8489 §6.3.1.1).
 * DONT-FRAGMENT is deliberately absent: Node cannot set the DF bit on relayed
 * datagrams, and RFC 8656 §7.2 says a server that cannot must treat it as unknown.
 * PASSWORD-ALGORITHM and USERHASH are absent too: our nonces do not offer the RFC 8489
 * security features, so a client using them gets 420 rather than a silent mismatch.
 */
export const KNOWN_REQUIRED_ATTRS: ReadonlySet<number> = new Set([
  Attr.MappedAddress,
  Attr.Username,
  Attr.MessageIntegrity,
  Attr.ErrorCode,
  Attr.UnknownAttributes,
  Attr.ChannelNumber,
  Attr.Lifetime,
  Attr.XorPeerAddress,
  Attr.Data,
  Attr.Realm,
  Attr.Nonce,
  Attr.XorRelayedAddress,
  Attr.RequestedAddressFamily,
  Attr.EvenPort,
  Attr.RequestedTransport,
  Attr.MessageIntegritySha256,
  Attr.XorMappedAddress,
  Attr.ReservationToken,
  Attr.Priority,
  Attr.UseCandidate,
]);

export const Family = { IPv4: 0x01, IPv6: 0x02 } as const;

/** Password algorithm numbers (RFC 8489 §18.5). */
export const PasswordAlgorithm = { MD5: 0x0001, SHA256: 0x0002 } as const;

/** IANA protocol number for UDP, the only REQUESTED-TRANSPORT we relay (RFC 8656 §7.2). */
export const TRANSPORT_UDP = 17;

/** Error codes used by this server with their reason phrases (RFC 8489 §14.8, RFC 8656 §18). */
export const ErrorCode = {
  TryAlternate: 300,
  BadRequest: 400,
  Unauthorized: 401,
  Forbidden: 403,
  UnknownAttribute: 420,
  AllocationMismatch: 437,
  StaleNonce: 438,
  AddressFamilyNotSupported: 440,
  WrongCredentials: 441,
  UnsupportedTransportProtocol: 442,
  PeerAddressFamilyMismatch: 443,
  AllocationQuotaReached: 486,
  ServerError: 500,
  InsufficientCapacity: 508,
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export const REASON: Readonly<Record<number, string>> = {
  300: "Try Alternate",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  420: "Unknown Attribute",
  437: "Allocation Mismatch",
  438: "Stale Nonce",
  440: "Address Family not Supported",
  441: "Wrong Credentials",
  442: "Unsupported Transport Protocol",
  443: "Peer Address Family Mismatch",
  486: "Allocation Quota Reached",
  500: "Server Error",
  508: "Insufficient Capacity",
};

/** Channel numbers. RFC 8656 narrows the range to 0x4000-0x4FFF; we accept the
 * RFC 5766 range up to 0x7FFF because deployed clients (coturn's own) still pick
 * numbers there, and nothing else can start with 0x50-0x7F on a TURN 5-tuple. */
export const CHANNEL_MIN = 0x4000;
export const CHANNEL_MAX = 0x7fff;
