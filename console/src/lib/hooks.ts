/** React hooks shared by the pages: loading data, and a run's live state. */
import { useCallback, useContext, useEffect, useRef, useState } from "react";
import { api, call, errorText, type Run } from "../api/client";
import { LiveContext } from "./context";
import { initialRun, reduceRun, seedFromRun, type LiveRunState, type Outcome } from "./liveRun";

export interface Loaded<T> {
  data: T | undefined;
  error: string | null;
  loading: boolean;
  reload: () => void;
  setData: (update: (old: T | undefined) => T | undefined) => void;
}

/** Runs `load` now and whenever `deps` change; `reload` runs it again. Stale answers are dropped. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [data, setDataState] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const generation = useRef(0);
  useEffect(() => {
    const mine = ++generation.current;
    setLoading(true);
    load().then(
      (value) => {
        if (mine !== generation.current) return;
        setDataState(value);
        setError(null);
        setLoading(false);
      },
      (e: unknown) => {
        if (mine !== generation.current) return;
        setError(errorText(e));
        setLoading(false);
      },
    );
    // The caller names in `deps` what `load` reads.
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  const setData = useCallback(
    (update: (old: T | undefined) => T | undefined) => setDataState((old) => update(old)),
    [],
  );
  return { data, error, loading, reload, setData };
}

export interface LiveRun {
  state: LiveRunState | null;
  run: Run | null;
  /** Why the run could not be read (it may not exist). */
  error: string | null;
}

/**
 * A run's live state: the run as the host has it, then its events (replayed, then live).
 * `onEnd` is called once when the run ends.
 */
export function useLiveRun(runId: string | null, onEnd?: (outcome: Outcome) => void): LiveRun {
  const live = useContext(LiveContext);
  const [state, setState] = useState<LiveRunState | null>(null);
  const [run, setRun] = useState<Run | null>(null);
  const [error, setError] = useState<string | null>(null);
  const onEndRef = useRef(onEnd);
  onEndRef.current = onEnd;
  const ended = useRef(false);

  useEffect(() => {
    if (!runId) {
      setState(null);
      setRun(null);
      return;
    }
    let active = true;
    ended.current = false;
    setState(initialRun(runId));
    setRun(null);
    setError(null);
    const fetchRun = () =>
      call(api.GET("/api/runs/{runId}", { params: { path: { runId } } })).then(
        (r) => {
          if (!active) return;
          setRun(r);
          setError(null);
          setState((s) => seedFromRun(s ?? initialRun(runId), r));
        },
        (e: unknown) => {
          // The events still tell the story; the run view only seeds it.
          if (active) setError(errorText(e));
        },
      );
    void fetchRun();
    const unwatch = live.watchRun(runId, (event) => {
      setState((s) => reduceRun(s ?? initialRun(runId), event));
      if (/-(completed|failed)$/.test(event.name)) void fetchRun();
    });
    return () => {
      active = false;
      unwatch();
    };
  }, [runId, live]);

  useEffect(() => {
    if (state?.outcome && !ended.current) {
      ended.current = true;
      onEndRef.current?.(state.outcome);
    }
  }, [state?.outcome]);

  return { state, run, error };
}
