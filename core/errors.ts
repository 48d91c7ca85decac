/**
 * One base error class for the whole product; a subclass per condition, each carrying the
 * context an operator needs (safe, device, block, RP, key) and a hint on what to do.
 * Code throws these; the boundary (CLI main, Lambda middleware) logs them once.
 */
export interface ErrorContext {
  readonly safe?: string;
  readonly device?: string;
  readonly block?: number;
  readonly rp?: number;
  readonly key?: string;
  readonly path?: string;
  readonly [extra: string]: unknown;
}

export class CdpError extends Error {
  /** Stable machine-readable code, e.g. `E_BAD_KEY`. */
  readonly code: string;
  readonly context: ErrorContext;
  /** What the operator can do about it. */
  readonly hint: string | undefined;

  constructor(
    code: string,
    message: string,
    context: ErrorContext = {},
    hint?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.context = context;
    this.hint = hint;
  }

  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      code: this.code,
      message: this.message,
      context: this.context,
      hint: this.hint,
    };
  }
}

/** An object key that does not follow the bucket layout (docs/FORMAT.md). */
export class BadKeyError extends CdpError {
  constructor(key: string, reason: string) {
    super('E_BAD_KEY', `bad key ${JSON.stringify(key)}: ${reason}`, { key });
  }
}

/** An input (event, file, object) that is not what it claims to be. */
export class BadInputError extends CdpError {
  constructor(what: string, reason: string, context: ErrorContext = {}, options?: ErrorOptions) {
    super('E_BAD_INPUT', `${what}: ${reason}`, context, undefined, options);
  }
}

/** A required setting (environment variable, option) is missing or malformed. */
export class ConfigError extends CdpError {
  constructor(setting: string, reason: string) {
    super('E_CONFIG', `setting ${setting}: ${reason}`, { setting }, `set ${setting} correctly`);
  }
}

/** The object or record asked for does not exist. */
export class NotFoundError extends CdpError {
  constructor(what: string, context: ErrorContext = {}) {
    super('E_NOT_FOUND', `${what} not found`, context);
  }
}

/** A conditional write lost: somebody else wrote first. */
export class ConflictError extends CdpError {
  constructor(what: string, context: ErrorContext = {}, options?: ErrorOptions) {
    super('E_CONFLICT', `${what} already exists or changed concurrently`, context, undefined, options);
  }
}
