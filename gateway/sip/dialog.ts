/**
 * Dialog state (RFC 3261 §12): identifiers, sequence numbers, remote target, route set, and
 * the construction of in-dialog requests (§12.2.1.1). We are always one hop from the
 * device, so requests go to the dialog's `dest` (the device's NAT-corrected address or its
 * connection) while the Request-URI and Route headers follow §12.2.1.1 exactly.
 */
import { ourContact, ourVia, type SipContext } from "./context.ts";
import type { Endpoint } from "./endpoint.ts";
import { SipHeaders, type SipRequest } from "./message.ts";

export interface DialogInit {
  callId: string;
  localTag: string;
  remoteTag: string | undefined;
  /** Our URI as name-addr without tag (`<sip:…>`). */
  localUri: string;
  /** The peer's URI as name-addr without tag. */
  remoteUri: string;
  localSeq: number;
  remoteSeq: number | undefined;
  remoteTarget: string;
  routeSet: string[];
  dest: Endpoint;
}

export class Dialog {
  readonly callId: string;
  readonly localTag: string;
  remoteTag: string | undefined;
  readonly localUri: string;
  readonly remoteUri: string;
  localSeq: number;
  remoteSeq: number | undefined;
  remoteTarget: string;
  routeSet: string[];
  dest: Endpoint;
  private readonly ctx: SipContext;

  constructor(ctx: SipContext, init: DialogInit) {
    this.ctx = ctx;
    this.callId = init.callId;
    this.localTag = init.localTag;
    this.remoteTag = init.remoteTag;
    this.localUri = init.localUri;
    this.remoteUri = init.remoteUri;
    this.localSeq = init.localSeq;
    this.remoteSeq = init.remoteSeq;
    this.remoteTarget = init.remoteTarget;
    this.routeSet = init.routeSet;
    this.dest = init.dest;
  }

  /** Dialog key as seen from our side: Call-ID, local tag, remote tag. */
  get key(): string {
    return dialogKey(this.callId, this.localTag, this.remoteTag ?? "");
  }

  /**
   * A new in-dialog request (§12.2.1.1). CSeq increments except for ACK (same number as the
   * INVITE, `cseq`) and CANCEL (never built here).
   */
  request(method: string, opts: { body?: Buffer; contentType?: string; headers?: [string, string][]; cseq?: number } = {}): SipRequest {
    const h = new SipHeaders();
    h.append("Via", ourVia(this.ctx, this.dest.transport, this.ctx.ids.branch()));
    h.append("Max-Forwards", "70");
    for (const r of this.routeSet) h.append("Route", r);
    h.append("From", `${this.localUri};tag=${this.localTag}`);
    h.append("To", this.remoteTag ? `${this.remoteUri};tag=${this.remoteTag}` : this.remoteUri);
    h.append("Call-ID", this.callId);
    let seq: number;
    if (method === "ACK") seq = opts.cseq ?? this.localSeq;
    else seq = ++this.localSeq;
    h.append("CSeq", `${seq} ${method}`);
    if (method === "INVITE" || method === "UPDATE") h.append("Contact", ourContact(this.ctx, this.dest.transport));
    for (const [k, v] of opts.headers ?? []) h.append(k, v);
    const body = opts.body ?? Buffer.alloc(0);
    if (body.length > 0 && opts.contentType) h.append("Content-Type", opts.contentType);
    return { kind: "request", method, uri: this.remoteTarget, headers: h, body };
  }
}

export function dialogKey(callId: string, localTag: string, remoteTag: string): string {
  return `${callId}\n${localTag}\n${remoteTag}`;
}
