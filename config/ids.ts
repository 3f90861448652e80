/**
 * Branded identifiers: a CameraId can never be passed where a SessionId is meant.
 * Brands cost nothing at run time; the constructors are the only casts.
 */

declare const brand: unique symbol;
export type Brand<T, B extends string> = T & { readonly [brand]: B };

export type CameraId = Brand<string, "CameraId">;
export type SessionId = Brand<string, "SessionId">;
export type ViewerId = Brand<string, "ViewerId">;
/** A multi-camera session of the SFU (one peer connection, many cameras). */
export type GridSessionId = Brand<string, "GridSessionId">;
export type UserId = Brand<string, "UserId">;
export type AllocationId = Brand<string, "AllocationId">;

export const cameraId = (s: string): CameraId => s as CameraId;
export const sessionId = (s: string): SessionId => s as SessionId;
export const viewerId = (s: string): ViewerId => s as ViewerId;
export const gridSessionId = (s: string): GridSessionId => s as GridSessionId;
export const userId = (s: string): UserId => s as UserId;
export const allocationId = (s: string): AllocationId => s as AllocationId;

/**
 * The SFU source of one of a camera's streams: the camera id itself for its main stream,
 * `<camera>:<stream>` for the others (':' never appears in a camera or stream id).
 */
export const streamSourceId = (camera: string, stream: string): CameraId => (stream === "main" ? camera : `${camera}:${stream}`) as CameraId;
