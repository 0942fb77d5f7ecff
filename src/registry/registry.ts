// The contract of a registry: where endpoints come from (and, for some, where this instance is registered).

/** A source of endpoints that fills the UpstreamTable. */
export interface Registry {
  /** `static` or `consul`. */
  readonly type: string;
  /** Loads the first endpoint set and starts watching. Resolves once started (not necessarily synced). */
  start(): Promise<void>;
  /** True once every watched upstream got its first snapshot. `/ready` requires it. */
  readonly synced: boolean;
  /** Stops watching (and deregisters, for registries that register). */
  stop(): Promise<void>;
  /** A JSON-able view for `/upstreams` and `/ready`. */
  status(): Record<string, unknown>;
}
