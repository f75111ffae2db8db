/** See entry.js. */
export declare const SOURCE_DIRS: readonly string[];
export declare function chooseEntry(root: URL): 'dist' | 'source' | 'missing';
